"""The model registry over HTTP: list, show, promote (hot swap without dropping requests)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from service.api.deps import EngineDep, RegistryDep, SwitcherDep
from service.api.embed import ERRORS
from service.serving import describe, describe_all

router = APIRouter(prefix="/models", tags=["models"])
MODEL_ERRORS = {**ERRORS, 404: ERRORS[400], 409: ERRORS[400]}


@router.get("", responses=MODEL_ERRORS)
async def list_models(registry: RegistryDep, engine: EngineDep) -> dict[str, Any]:
    rows = await run_in_threadpool(registry.list)
    return {"serving": engine.manifest.ref, "models": describe_all(rows, engine.manifest.ref)}


@router.get("/{ref}", responses=MODEL_ERRORS)
async def show_model(ref: str, registry: RegistryDep, engine: EngineDep) -> dict[str, Any]:
    """A registered version by id or NAME@VERSION."""
    row = await run_in_threadpool(registry.get, ref)
    return describe(row, engine.manifest.ref)


@router.post("/{ref}/promote", responses=MODEL_ERRORS)
async def promote_model(
    ref: str, switcher: SwitcherDep, engine: EngineDep, force: bool = False
) -> dict[str, Any]:
    """Load and warm the version and its index, make it active, then switch traffic to it
    atomically. Refused while its index misses stored notes, unless `force`."""
    row = await switcher.promote(ref, force=force)
    return describe(row, engine.manifest.ref)
