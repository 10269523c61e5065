"""`notespace db`: schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from service.cli.common import DatabaseOption, database_url

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    url: DatabaseOption = None,
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from service.registry.database import upgrade

    upgrade(database_url(url), revision)
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
