"""The model registry over HTTP: list, show, promote (hot swap without dropping requests)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service.api.deps import EngineDep, RegistryDep, SwitcherDep
from service.api.errors import error_responses
from service.api.security import acting_user
from service.security import ANONYMOUS, Principal
from service.serving import PromotionOverrides, describe, describe_all

router = APIRouter(prefix="/models", tags=["models"])
MODEL_ERRORS = error_responses(400, 404, 409, 413, 422, 503)


@router.get("", responses=MODEL_ERRORS)
async def list_models(registry: RegistryDep, engine: EngineDep) -> dict[str, Any]:
    """Every registered version, with the latest promotion-guard comparison of each."""
    rows = await run_in_threadpool(registry.list)
    checks = await run_in_threadpool(registry.latest_checks)
    return {
        "serving": engine.manifest.ref,
        "models": describe_all(rows, engine.manifest.ref, checks),
    }


@router.get("/{ref}", responses=MODEL_ERRORS)
async def show_model(ref: str, registry: RegistryDep, engine: EngineDep) -> dict[str, Any]:
    """A registered version by id or NAME@VERSION, with its latest promotion-guard comparison."""
    row = await run_in_threadpool(registry.get, ref)
    check = await run_in_threadpool(registry.latest_check, row.id)
    return describe(row, engine.manifest.ref, check)


def requester(request: Request) -> str:
    """Who asks, for the promotion record: the acting user and the key, never the key itself."""
    principal: Principal = getattr(request.state, "principal", ANONYMOUS)
    key = f"key {principal.name} ({principal.key_id})" if principal.key_id else "no key (auth off)"
    user = acting_user(request)
    return f"{user} via HTTP, {key}" if user else f"HTTP, {key}"


@router.post("/{ref}/promote", responses=MODEL_ERRORS)
async def promote_model(
    ref: str,
    request: Request,
    switcher: SwitcherDep,
    registry: RegistryDep,
    engine: EngineDep,
    force: Annotated[bool, Query(description="override both checks below")] = False,
    force_index: Annotated[
        bool, Query(description="promote although its index misses stored notes")
    ] = False,
    force_regression: Annotated[
        bool, Query(description="promote although the promotion guard refuses it")
    ] = False,
) -> dict[str, Any]:
    """Load and warm the version and its index, make it active, then switch traffic to it
    atomically. Refused (409) while its index misses stored notes (`force_index`), and when its
    evaluation-suite results are worse than the version it replaces beyond the margin
    (`promotion_regression`; `force_regression`). `force` overrides both."""
    overrides = PromotionOverrides.from_flags(
        force=force, force_index=force_index, force_regression=force_regression
    )
    row = await switcher.promote(ref, requested_by=requester(request), overrides=overrides)
    check = await run_in_threadpool(registry.latest_check, row.id)
    return describe(row, engine.manifest.ref, check)
