"""The model registry over HTTP: list, show, promote (hot swap without dropping requests)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.access import CallDep
from service.api.deps import CatalogueDep, SwitcherDep
from service.api.errors import error_responses
from service.orchestration.catalogue import ModelList, ModelView
from service.orchestration.promotion import PromotionOverrides

router = APIRouter(prefix="/models", tags=["models"])
MODEL_ERRORS = error_responses(400, 404, 409, 413, 422, 503)


@router.get("", response_model=ModelList, responses=MODEL_ERRORS)
async def list_models(catalogue: CatalogueDep) -> ModelList:
    """Every registered version, with the latest promotion-guard comparison of each."""
    return await catalogue.list()


@router.get("/{ref}", response_model=ModelView, responses=MODEL_ERRORS)
async def show_model(ref: str, catalogue: CatalogueDep) -> ModelView:
    """A registered version by id or NAME@VERSION, with its latest promotion-guard comparison."""
    return await catalogue.show(ref)


@router.post("/{ref}/promote", response_model=ModelView, responses=MODEL_ERRORS)
async def promote_model(
    ref: str,
    call: CallDep,
    switcher: SwitcherDep,
    catalogue: CatalogueDep,
    force: Annotated[bool, Query(description="override both checks below")] = False,
    force_index: Annotated[
        bool, Query(description="promote although its index misses stored notes")
    ] = False,
    force_regression: Annotated[
        bool, Query(description="promote although the promotion guard refuses it")
    ] = False,
) -> ModelView:
    """Load and warm the version and its index, make it active, then switch traffic to it
    atomically. Refused (409) while its index misses stored notes (`force_index`), and when its
    evaluation-suite results are worse than the version it replaces beyond the margin
    (`promotion_regression`; `force_regression`). `force` overrides both."""
    overrides = PromotionOverrides.from_flags(
        force=force, force_index=force_index, force_regression=force_regression
    )
    row = await switcher.promote(ref, requested_by=call.requester(), overrides=overrides)
    return await catalogue.view(row)
