"""Registered model versions as the API and CLI show them: pydantic views read from the rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field
from starlette.concurrency import run_in_threadpool

from service.registry.models import ModelRegistry
from service.registry.tables import ModelVersion, PromotionCheck

# As Python writes them (`+00:00`, not pydantic's `Z`), so the output reads as it always has.
IsoTime = Annotated[datetime, PlainSerializer(lambda d: d.isoformat(), return_type=str)]


class SuiteRef(BaseModel):
    name: str | None
    fingerprint: str | None


class PromotionCheckView(BaseModel):
    """One promotion-guard comparison (a decision, recorded; never updated)."""

    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    checked_at: IsoTime | None
    requested_by: str
    candidate: str = Field(validation_alias="candidate_ref")
    against: str | None = Field(validation_alias="against_ref")
    outcome: str
    reason: str
    suite_name: str | None = Field(exclude=True)
    suite_fingerprint: str | None = Field(exclude=True)
    margin: float
    tasks: dict[str, Any] | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def suite(self) -> SuiteRef:
        return SuiteRef(name=self.suite_name, fingerprint=self.suite_fingerprint)


class ModelView(BaseModel):
    """A registered version: lineage, evaluation, lifecycle, and its latest promotion check."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    ref: str
    name: str
    version: str
    status: str
    serving: bool = Field(default=False, description="the version this service serves now")
    objective: str
    base_model: str
    embedding_dim: int
    max_tokens: int
    precision: str
    bundle_path: str
    bundle_sha256: str
    training_config: dict[str, Any] | None
    data_fingerprint: str | None
    eval_metrics: dict[str, Any] | None
    registered_by: str
    created_at: IsoTime | None
    activated_at: IsoTime | None
    retired_at: IsoTime | None
    promotion_check: PromotionCheckView | None = None

    @classmethod
    def of(cls, row: ModelVersion, *, serving: bool, check: PromotionCheck | None) -> ModelView:
        view = cls.model_validate(row)
        view.serving = serving
        view.promotion_check = PromotionCheckView.model_validate(check) if check else None
        return view


class ModelList(BaseModel):
    serving: str = Field(description="NAME@VERSION of the version this service serves")
    models: list[ModelView]


def model_views(
    rows: Sequence[ModelVersion],
    checks: Mapping[int, PromotionCheck],
    is_serving: Callable[[ModelVersion], bool],
) -> list[ModelView]:
    return [ModelView.of(r, serving=is_serving(r), check=checks.get(r.id)) for r in rows]


class ModelCatalogue:
    """The registry's versions, read for the API, marked against the version serving now."""

    def __init__(self, registry: ModelRegistry, serving_ref: Callable[[], str]) -> None:
        self._registry = registry
        self._serving_ref = serving_ref

    async def list(self) -> ModelList:
        rows = await run_in_threadpool(self._registry.list)
        checks = await run_in_threadpool(self._registry.latest_checks)
        serving = self._serving_ref()
        return ModelList(
            serving=serving, models=model_views(rows, checks, lambda r: r.ref == serving)
        )

    async def show(self, ref: str) -> ModelView:
        row = await run_in_threadpool(self._registry.get, ref)
        return await self.view(row)

    async def view(self, row: ModelVersion) -> ModelView:
        check = await run_in_threadpool(self._registry.latest_check, row.id)
        return ModelView.of(row, serving=row.ref == self._serving_ref(), check=check)
