"""Which model serves: resolved from the registry at start, swapped on promotion.

A swap loads and warms the new model and opens its index first, then hands the runtime to the
engine (`EmbeddingEngine.swap`, one reference assignment); requests already running keep the
runtime they started with, so none is dropped. A failed load leaves the old model serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from service.bundle import BundleError, load_bundle
from service.errors import ModelLoadFailed, NotespaceError
from service.inference.config import RuntimeConfig
from service.inference.engine import EmbeddingEngine
from service.inference.runtime import ModelRuntime
from service.orchestration.promotion import PromotionGate, PromotionOverrides
from service.orchestration.vector_stores import VectorStore
from service.registry.models import ModelRegistry, bundle_digest
from service.registry.tables import ModelVersion

log = logging.getLogger(__name__)

AUTO_REGISTERED_BY = "notespace serve (bundle_path fallback)"


class StartupError(RuntimeError):
    """The service cannot choose or load a model to serve."""


def resolve_serving_version(
    registry: ModelRegistry, model_name: str | None, bundle_path: Path
) -> ModelVersion:
    """The active version to serve; on an empty registry, register and promote bundle_path."""
    active = registry.active(model_name)
    if active is not None:
        return active
    if model_name is not None:
        raise StartupError(
            f"no active version of model {model_name!r} in the registry; "
            "promote one with `notespace models promote NAME@VERSION`"
        )
    try:
        bundle = load_bundle(bundle_path)
    except BundleError as exc:
        raise StartupError(f"no active model in the registry, and {exc}") from exc
    row = registry.register(bundle, registered_by=AUTO_REGISTERED_BY)
    log.info("registry was empty: registered and promoted %s from bundle_path", row.ref)
    return registry.promote(row.ref)


def load_runtime(row: ModelVersion, config: RuntimeConfig) -> ModelRuntime:
    """Load a registered version's bundle, check it is the bundle registered, warm it."""
    bundle = load_bundle(row.bundle_path)
    if bundle_digest(bundle) != row.bundle_sha256:
        raise BundleError(
            f"bundle at {row.bundle_path} is not the one registered as {row.ref} "
            "(manifest sha256 differs)"
        )
    return ModelRuntime.load(bundle, config, version_id=row.id)


class ModelSwitcher:
    """Promotes over HTTP, follows promotions made elsewhere, and swaps the engine's model."""

    def __init__(
        self,
        gate: PromotionGate,
        engine: EmbeddingEngine,
        indexes: VectorStore,
        *,
        runtime_config: RuntimeConfig,
        model_name: str | None,
        registry_poll_s: float,
    ) -> None:
        self._gate = gate
        self._registry = gate.registry
        self._engine = engine
        self._indexes = indexes
        self._runtime_config = runtime_config
        self._model_name = model_name
        self._poll_s = registry_poll_s
        self._lock = asyncio.Lock()
        # Set when a promotion is announced (PostgreSQL NOTIFY): the follower looks at once.
        self._announced = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def serving_name(self) -> str:
        return self._model_name or self._engine.manifest.name

    @property
    def serving_ref(self) -> str:
        return self._engine.manifest.ref

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
                lambda: self._gate.authorise(
                    row,
                    overrides or PromotionOverrides(),
                    requested_by=requested_by,
                    fallback_ref=self.serving_ref,
                )
            )
            runtime = None
            if row.name == self.serving_name:
                runtime = await self._load(row)
            promoted = await run_in_threadpool(self._registry.promote, ref, guarded=guarded)
            if runtime is not None:
                self._swap(runtime)
            return promoted

    def promotion_announced(self, model_name: str) -> None:
        """A promotion of `model_name` was committed somewhere (called from the listener's
        thread): wake the follower now instead of at its next poll."""
        loop = self._loop
        if model_name != self.serving_name or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed: the service is stopping
            loop.call_soon_threadsafe(self._announced.set)

    async def follow_registry(self) -> None:
        """Pick up promotions made elsewhere (the CLI, another replica) while running: at once
        when one is announced, and every `registry_poll_s` whatever happens (the fallback
        when announcements are lost or the database has none)."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self._announced.wait(), self._poll_s)
                log.info("a promotion of %s was announced; following it", self.serving_name)
            except TimeoutError:
                pass
            self._announced.clear()
            try:
                await self.sync_once()
            except (NotespaceError, BundleError, OSError) as exc:
                log.error("registry sync failed, still serving %s: %s", self.serving_ref, exc)
            except Exception as exc:  # noqa: BLE001 - a poller that dies would stop failover
                log.error("registry sync failed (%s)", type(exc).__name__)

    async def sync_once(self) -> None:
        await run_in_threadpool(self._indexes.catch_up_all)  # writes by other processes
        await run_in_threadpool(self._indexes.snapshot_due)
        async with self._lock:
            active = await run_in_threadpool(self._registry.active, self.serving_name)
            if active is None or active.ref == self.serving_ref:
                return
            self._swap(await self._load(active))

    async def _load(self, row: ModelVersion) -> ModelRuntime:
        try:
            runtime = await run_in_threadpool(load_runtime, row, self._runtime_config)
        except (BundleError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(
                f"cannot load {row.ref}: {exc}; still serving {self.serving_ref}"
            ) from None
        # Its own index (vectors of different models never mix), ready before traffic moves.
        await run_in_threadpool(self._indexes.open, row.id, row.ref, runtime.manifest.embedding_dim)
        return runtime

    def _swap(self, runtime: ModelRuntime) -> None:
        previous = self._engine.swap(runtime)
        log.info("now serving %s (was %s)", runtime.manifest.ref, previous.manifest.ref)
