"""Database engine and the schema-revision check the service runs before it starts."""

from __future__ import annotations

import math
import os
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# alembic/ sits at the top of the source tree, beside service/. A non-editable install (the
# service image) has no such tree around the package and names the folder in
# NOTESPACE_ALEMBIC_DIR instead (site-packages/alembic is the alembic library itself).
ALEMBIC_DIR = Path(__file__).resolve().parents[2] / "alembic"


def alembic_dir() -> Path:
    override = os.environ.get("NOTESPACE_ALEMBIC_DIR")
    return Path(override) if override else ALEMBIC_DIR


class SchemaError(RuntimeError):
    """The database schema is missing, behind or ahead of this code."""


def make_engine(
    url: str,
    *,
    connect_timeout_s: float = 10.0,
    statement_timeout_ms: int | None = None,
) -> Engine:
    """An engine that never writes statement parameters into an error message: they hold note
    text and metadata, and error messages end up in logs and tracebacks.

    On PostgreSQL a connection attempt gives up after `connect_timeout_s`, so an unreachable
    server answers fast instead of after the operating system's TCP timeout, and the pool
    waits no longer than that for a free connection; `statement_timeout_ms` bounds a
    statement (the service sets it; migrations and offline jobs do not).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cursor.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection) -> None:  # type: ignore[no-untyped-def]
            # Writers take the lock when they begin, so two read-then-write transactions
            # queue on the busy timeout instead of failing on a stale snapshot.
            immediate = connection.get_execution_options().get("sqlite_immediate", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    connect_args: dict[str, object] = {
        "connect_timeout": max(2, math.ceil(connect_timeout_s)),  # libpq: whole seconds, >= 2
        # A peer that vanishes (host down, network cut) is noticed in seconds, not hours.
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    if statement_timeout_ms is not None:
        connect_args["options"] = f"-c statement_timeout={int(statement_timeout_ms)}"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=connect_timeout_s,
        hide_parameters=True,
        connect_args=connect_args,
    )


def session_factory(engine: Engine, *, writer: bool = False) -> sessionmaker[Session]:
    """Sessions for reading, or for read-then-write transactions (`writer=True`)."""
    bind = engine.execution_options(sqlite_immediate=True) if writer else engine
    return sessionmaker(bind, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(alembic_dir()))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine) -> None:
    """Refuse to run on an un-migrated, older or newer-than-code schema."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaError("the database has no notespace schema; run `notespace db upgrade` first")
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database schema ({current}) is newer than this code ({head}); "
            "upgrade notespace, or downgrade the database with the newer release"
        )
    raise SchemaError(
        f"the database schema ({current}) is behind this code ({head}); run `notespace db upgrade`"
    )


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
