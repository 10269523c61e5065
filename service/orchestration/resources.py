"""Everything the running service is made of, built once at start and closed at shutdown.

The composition root below the app: it checks the schema, chooses the model from the registry,
loads and warms it, opens its index, starts inference and the audit writer, and wires the
orchestration services the API uses. Each piece of state has one owner: the engine owns the
serving runtime, the indexes their FAISS copies, the database everything durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import faiss
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from service.bundle import BundleError
from service.errors import NotespaceError
from service.inference.batcher import Batcher
from service.inference.engine import EmbeddingEngine
from service.metrics import ServiceMetrics
from service.orchestration.access import Authenticator
from service.orchestration.catalogue import ModelCatalogue
from service.orchestration.configs import (
    batcher_config,
    engine_config,
    runtime_config,
)
from service.orchestration.embedding import Embedder
from service.orchestration.notes import NoteService
from service.orchestration.promotion import PromotionGate
from service.orchestration.quotas import SharedQuotas
from service.orchestration.serving import (
    ModelSwitcher,
    StartupError,
    load_runtime,
    resolve_serving_version,
)
from service.orchestration.vector_stores import VectorStore, open_vector_store
from service.registry.audit import AuditLog
from service.registry.database import SchemaError, check_schema, make_engine
from service.registry.keys import KeyStore
from service.registry.models import ModelRegistry
from service.registry.promotion_events import PromotionListener
from service.registry.quota_state import QuotaState
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    """What the API may use: the orchestration services, the settings and the metrics."""

    settings: Settings
    metrics: ServiceMetrics
    embedder: Embedder
    notes: NoteService
    switcher: ModelSwitcher
    catalogue: ModelCatalogue
    access: Authenticator
    audit: AuditLog
    shared_quotas: SharedQuotas | None  # None: quotas are counted in process (SQLite)
    # Owned here for shutdown, not for the routes.
    _db: Engine
    _batcher: Batcher
    _indexes: VectorStore


def build_resources(settings: Settings, metrics: ServiceMetrics) -> Resources:
    """Check the schema, choose the model from the registry, load and warm it, start inference."""
    faiss.omp_set_num_threads(settings.index_threads)  # process-wide, so set by the service
    db = make_engine(
        settings.database_url,
        connect_timeout_s=settings.database_connect_timeout_s,
        statement_timeout_ms=settings.database_statement_timeout_ms or None,
    )
    try:
        check_schema(db)
        store, indexes = open_vector_store(settings, db)  # a missing pgvector fails here, fast
        registry = ModelRegistry(db)
        row = resolve_serving_version(registry, settings.model_name, settings.bundle_path)
        runtime = load_runtime(row, runtime_config(settings))
        indexes.open(row.id, row.ref, runtime.manifest.embedding_dim)
    except (SchemaError, StartupError, BundleError, NotespaceError) as exc:
        db.dispose()
        log.critical("cannot start: %s", exc)
        raise
    except SQLAlchemyError as exc:
        db.dispose()
        # The kind only: a driver message can quote stored values.
        log.critical("cannot start: the database failed (%s)", type(exc).__name__)
        raise StartupError(f"database failed at start-up ({type(exc).__name__})") from None
    batcher = Batcher(batcher_config(settings), metrics)
    batcher.start()
    engine = EmbeddingEngine(runtime, batcher, engine_config(settings), metrics)
    log.info("serving %s (dim %d)", row.ref, runtime.manifest.embedding_dim)
    switcher = ModelSwitcher(
        PromotionGate(registry, store, settings),
        engine,
        indexes,
        runtime_config=runtime_config(settings),
        model_name=settings.model_name,
        registry_poll_s=settings.registry_poll_s,
    )
    metrics.index_snapshot_failing.set_function(lambda: float(indexes.snapshot_failing()))
    access = Authenticator(KeyStore(db), enabled=settings.auth_enabled)
    if not access.enabled:
        log.warning(
            "AUTH IS OFF: no API key is needed. Allowed only because the service binds to "
            "loopback (%s); set NOTESPACE_AUTH=on for anything but a local trial",
            settings.host,
        )
    audit = AuditLog(db)
    audit.start()
    return Resources(
        settings=settings,
        metrics=metrics,
        embedder=Embedder(engine, settings.model_aliases),
        notes=NoteService(store, indexes, engine),
        switcher=switcher,
        catalogue=ModelCatalogue(registry, lambda: engine.manifest.ref),
        access=access,
        audit=audit,
        shared_quotas=SharedQuotas(QuotaState(db)) if settings.quotas_shared else None,
        _db=db,
        _batcher=batcher,
        _indexes=indexes,
    )


def close_resources(resources: Resources) -> None:
    """Flush the audit trail, finish queued inference, checkpoint the indexes (a faster next
    start), release the database."""
    resources.audit.stop()
    resources._batcher.stop()
    resources._indexes.close()
    resources._db.dispose()


@asynccontextmanager
async def running_service(settings: Settings, metrics: ServiceMetrics) -> AsyncIterator[Resources]:
    """The service's resources for the lifetime of the app, following promotions made
    elsewhere (the CLI, another replica) while it runs: on PostgreSQL a listener hears each
    promotion as it commits, and the registry poll remains the bound if it misses one."""
    resources = await run_in_threadpool(build_resources, settings, metrics)
    follower = asyncio.create_task(resources.switcher.follow_registry())
    listener = None
    if resources._db.dialect.name == "postgresql":
        listener = PromotionListener(
            resources._db,
            resources.switcher.promotion_announced,
            connect_timeout_s=settings.database_connect_timeout_s,
        )
        listener.start()
    try:
        yield resources
    finally:
        follower.cancel()
        if listener is not None:
            await run_in_threadpool(listener.stop)
        await run_in_threadpool(close_resources, resources)
