"""What every command group shares: settings, the database, clean failures, output formats.

Also the seam for command groups that plug in from outside the service (training/cli.py): they
open the registry and fail through these helpers, never through the service's internals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from service.registry.models import ModelRegistry
    from service.settings import Settings

T = TypeVar("T")

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="[env NOTESPACE_DATABASE_URL]")
]


JsonOption = Annotated[
    bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")
]


def settings(**overrides: Any) -> Settings:
    """The service's settings from NOTESPACE_* (and .env), with the flags given on top."""
    from service.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def database_url(url: str | None) -> str:
    return url or settings().database_url


def fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


def open_registry(url: str | None = None) -> ModelRegistry:
    """The model registry on a migrated database (exits with a clear message otherwise)."""
    from service.registry.database import SchemaError, check_schema, make_engine
    from service.registry.models import ModelRegistry

    engine = make_engine(database_url(url))
    try:
        check_schema(engine)
    except SchemaError as exc:
        raise fail(str(exc)) from None
    return ModelRegistry(engine)


def clean(action: Callable[[], T]) -> T:
    """Run `action`; a domain or bundle error becomes one red line and exit status 1."""
    from service.bundle import BundleError
    from service.errors import NotespaceError

    try:
        return action()
    except (NotespaceError, BundleError) as exc:
        raise fail(str(exc)) from None


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table that wraps long cells instead of cutting them (names, refs, key ids stay whole)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for column in table.columns:
        column.overflow = "fold"
    for row in rows:
        table.add_row(*row)
    Console(soft_wrap=False).print(table)
