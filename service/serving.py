"""Which model serves: resolved from the registry at start, swapped on promotion.

A swap loads and warms the new model first and then replaces the engine's runtime reference in
one assignment; requests already running keep the runtime they started with, so none is dropped.
A failed load leaves the old model serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from service.bundle import BundleError, load_bundle
from service.errors import Conflict, ModelLoadFailed, NotespaceError
from service.inference.engine import EmbeddingEngine, ModelRuntime
from service.note_index import NoteIndexes
from service.registry.models import (
    GuardedPromotion,
    ModelRegistry,
    PromotionRequest,
    bundle_digest,
)
from service.registry.notes import NoteStore
from service.registry.promotion_guard import PromotionPolicy
from service.registry.tables import ModelVersion, PromotionCheck
from service.settings import Settings

log = logging.getLogger(__name__)

AUTO_REGISTERED_BY = "notespace serve (bundle_path fallback)"


class StartupError(RuntimeError):
    """The service cannot choose or load a model to serve."""


def resolve_serving_version(registry: ModelRegistry, settings: Settings) -> ModelVersion:
    """The active version to serve; on an empty registry, register and promote bundle_path."""
    active = registry.active(settings.model_name)
    if active is not None:
        return active
    if settings.model_name is not None:
        raise StartupError(
            f"no active version of model {settings.model_name!r} in the registry; "
            "promote one with `notespace models promote NAME@VERSION`"
        )
    try:
        bundle = load_bundle(settings.bundle_path)
    except BundleError as exc:
        raise StartupError(f"no active model in the registry, and {exc}") from exc
    row = registry.register(bundle, registered_by=AUTO_REGISTERED_BY)
    log.info("registry was empty: registered and promoted %s from bundle_path", row.ref)
    return registry.promote(row.ref)


def load_runtime(row: ModelVersion, settings: Settings) -> ModelRuntime:
    """Load a registered version's bundle, check it is the bundle registered, warm it."""
    bundle = load_bundle(row.bundle_path)
    if bundle_digest(bundle) != row.bundle_sha256:
        raise BundleError(
            f"bundle at {row.bundle_path} is not the one registered as {row.ref} "
            "(manifest sha256 differs)"
        )
    runtime = ModelRuntime.load(bundle, settings, version_id=row.id)
    if settings.warmup:
        runtime.warm_up()
    return runtime


def check_index_coverage(store: NoteStore, row: ModelVersion, *, force: bool) -> None:
    """Refuse to promote a version whose index would miss stored notes (unless forced)."""
    live, covered = store.counts(row.id)
    if covered < live and not force:
        raise Conflict(
            f"the index for {row.ref} covers {covered} of {live} stored notes; run "
            f"`notespace index rebuild --model {row.ref}` first, or promote with force"
        )


@dataclass(frozen=True)
class PromotionOverrides:
    """What an operator chose to override: `--force` (HTTP `?force=true`) sets both."""

    index: bool = False  # promote although the version's index misses stored notes
    regression: bool = False  # promote although the promotion guard refuses it

    @classmethod
    def from_flags(
        cls, *, force: bool, force_index: bool, force_regression: bool
    ) -> PromotionOverrides:
        return cls(index=force or force_index, regression=force or force_regression)


def promotion_policy(settings: Settings) -> PromotionPolicy:
    return PromotionPolicy(
        margin=settings.promotion_margin,
        task_margins=dict(settings.promotion_task_margins),
        requires_eval=settings.promotion_requires_eval,
    )


def authorise_promotion(
    registry: ModelRegistry,
    store: NoteStore,
    settings: Settings,
    row: ModelVersion,
    overrides: PromotionOverrides,
    *,
    requested_by: str,
    fallback_ref: str | None,
) -> GuardedPromotion | None:
    """Every check a promotion must pass, for the CLI and HTTP alike: the version's index
    covers the stored notes, and the promotion guard (recorded) lets it through."""
    if row.status == "retired":
        raise Conflict(f"{row.ref} is retired and cannot be promoted")
    if settings.promote_requires_complete_index:
        check_index_coverage(store, row, force=overrides.index)
    request = PromotionRequest(requested_by, overrides.regression, fallback_ref)
    return registry.guard_promotion(row.ref, promotion_policy(settings), request)


class ModelSwitcher:
    def __init__(
        self,
        registry: ModelRegistry,
        engine: EmbeddingEngine,
        settings: Settings,
        indexes: NoteIndexes,
        store: NoteStore,
    ) -> None:
        self._registry = registry
        self._engine = engine
        self._settings = settings
        self._indexes = indexes
        self._store = store
        self._lock = asyncio.Lock()

    @property
    def serving_name(self) -> str:
        return self._settings.model_name or self._engine.manifest.name

    async def promote(
        self,
        ref: str,
        *,
        requested_by: str,
        overrides: PromotionOverrides | None = None,
    ) -> ModelVersion:
        """Promote `ref` in the registry and, if it is the model this service serves, swap.
        A version the name has no active version of is compared with the one serving."""
        async with self._lock:
            row = await run_in_threadpool(self._registry.get, ref)
            guarded = await run_in_threadpool(
                authorise_promotion,
                self._registry,
                self._store,
                self._settings,
                row,
                overrides or PromotionOverrides(),
                requested_by=requested_by,
                fallback_ref=self._engine.manifest.ref,
            )
            runtime = None
            if row.name == self.serving_name:
                runtime = await self._load(row)
            promoted = await run_in_threadpool(self._registry.promote, ref, guarded=guarded)
            if runtime is not None:
                self._swap(runtime)
            return promoted

    async def follow_registry(self) -> None:
        """Pick up promotions made elsewhere (the CLI, another replica) while running."""
        while True:
            await asyncio.sleep(self._settings.registry_poll_s)
            try:
                await self.sync_once()
            except (NotespaceError, BundleError, OSError) as exc:
                log.error(
                    "registry sync failed, still serving %s: %s", self._engine.manifest.ref, exc
                )
            except Exception as exc:  # noqa: BLE001 - a poller that dies would stop failover
                log.error("registry sync failed (%s)", type(exc).__name__)

    async def sync_once(self) -> None:
        await run_in_threadpool(self._indexes.catch_up_all)  # writes by other processes
        await run_in_threadpool(self._indexes.snapshot_due)
        async with self._lock:
            active = await run_in_threadpool(self._registry.active, self.serving_name)
            if active is None or active.ref == self._engine.manifest.ref:
                return
            self._swap(await self._load(active))

    async def _load(self, row: ModelVersion) -> ModelRuntime:
        try:
            runtime = await run_in_threadpool(load_runtime, row, self._settings)
        except (BundleError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(
                f"cannot load {row.ref}: {exc}; still serving {self._engine.manifest.ref}"
            ) from None
        # Its own index (vectors of different models never mix), ready before traffic moves.
        await run_in_threadpool(self._indexes.open, row.id, row.ref, runtime.manifest.embedding_dim)
        return runtime

    def _swap(self, runtime: ModelRuntime) -> None:
        previous = self._engine.manifest.ref
        self._engine.runtime = runtime  # one reference assignment: atomic for readers
        log.info("now serving %s (was %s)", runtime.manifest.ref, previous)


def describe_check(check: PromotionCheck | None) -> dict[str, object] | None:
    """A promotion-guard record as the API and CLI show it."""
    if check is None:
        return None
    return {
        "id": check.id,
        "checked_at": check.checked_at.isoformat() if check.checked_at else None,
        "requested_by": check.requested_by,
        "candidate": check.candidate_ref,
        "against": check.against_ref,
        "outcome": check.outcome,
        "reason": check.reason,
        "suite": {"name": check.suite_name, "fingerprint": check.suite_fingerprint},
        "margin": check.margin,
        "tasks": check.tasks,
    }


def describe(
    row: ModelVersion, serving_ref: str, check: PromotionCheck | None = None
) -> dict[str, object]:
    return {
        "id": row.id,
        "ref": row.ref,
        "name": row.name,
        "version": row.version,
        "status": row.status,
        "serving": row.ref == serving_ref,
        "objective": row.objective,
        "base_model": row.base_model,
        "embedding_dim": row.embedding_dim,
        "max_tokens": row.max_tokens,
        "precision": row.precision,
        "bundle_path": row.bundle_path,
        "bundle_sha256": row.bundle_sha256,
        "training_config": row.training_config,
        "data_fingerprint": row.data_fingerprint,
        "eval_metrics": row.eval_metrics,
        "registered_by": row.registered_by,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "retired_at": row.retired_at.isoformat() if row.retired_at else None,
        "promotion_check": describe_check(check),
    }


def describe_all(
    rows: Sequence[ModelVersion],
    serving_ref: str,
    checks: Mapping[int, PromotionCheck] | None = None,
) -> list[dict[str, object]]:
    checks = checks or {}
    return [describe(r, serving_ref, checks.get(r.id)) for r in rows]
