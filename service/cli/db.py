"""`notespace db`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import DatabaseOption, database_url, fail, settings

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    url: DatabaseOption = None,
) -> None:
    """Apply migrations up to REVISION (default: the newest); with NOTESPACE_VECTOR_STORE=
    pgvector, also check the pgvector extension (one clear line if it is missing)."""
    from service.orchestration.configs import pgvector_config
    from service.registry.database import make_engine, upgrade
    from service.registry.pgvector_store import PgvectorMissing, PgvectorStore

    config = settings(database_url=url)
    upgrade(config.database_url, revision)
    if config.vector_store == "pgvector":
        engine = make_engine(config.database_url)
        try:
            PgvectorStore(engine, pgvector_config(config)).ensure_schema()
        except PgvectorMissing as exc:
            raise fail(str(exc)) from None
        finally:
            engine.dispose()
    typer.echo(f"database at {revision}")


@app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")],
    url: DatabaseOption = None,
) -> None:
    """Revert migrations down to REVISION."""
    from service.registry.database import downgrade

    downgrade(database_url(url), revision)
    typer.echo(f"database at {revision}")


@app.command("current")
def db_current(url: DatabaseOption = None) -> None:
    """Show the database's schema revision and the code's."""
    from service.registry.database import current_revision, head_revision, make_engine

    engine = make_engine(database_url(url))
    typer.echo(f"database: {current_revision(engine) or '(empty)'}\ncode:     {head_revision()}")
    engine.dispose()
