"""The `notespace` command line. Training commands plug in through the `notespace.cli`
entry-point group, so this module never imports training code (or torch)."""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="notespace",
    help="On-premise embeddings, categories and search for clinical notes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals could hold note text
)


def _settings(**overrides: Any) -> Any:
    from service.settings import Settings

    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind [env NOTESPACE_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="port [env NOTESPACE_PORT]")] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="model bundle directory [env NOTESPACE_BUNDLE_PATH]")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto [env NOTESPACE_DEVICE]")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from service.app import create_app

    settings = _settings(host=host, port=port, bundle_path=bundle, device=device)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=10,
    )


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
models_app = typer.Typer(
    help="The model registry: register, list, promote, retire.", no_args_is_help=True
)
index_app = typer.Typer(help="Note vector indexes: rebuild and statistics.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")

DatabaseOption = Annotated[
    str | None, typer.Option("--database-url", help="[env NOTESPACE_DATABASE_URL]")
]


def _database_url(url: str | None) -> str:
    return url or str(_settings().database_url)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg="red", err=True)
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    database_url: DatabaseOption = None,
) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from service.registry.database import upgrade

    upgrade(_database_url(database_url), revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")],
    database_url: DatabaseOption = None,
) -> None:
    """Revert migrations down to REVISION."""
    from service.registry.database import downgrade

    downgrade(_database_url(database_url), revision)
    typer.echo(f"database at {revision}")


@db_app.command("current")
def db_current(database_url: DatabaseOption = None) -> None:
    """Show the database's schema revision and the code's."""
    from service.registry.database import current_revision, head_revision, make_engine

    engine = make_engine(_database_url(database_url))
    typer.echo(f"database: {current_revision(engine) or '(empty)'}\ncode:     {head_revision()}")
    engine.dispose()


def registry(database_url: str | None = None) -> Any:
    """The model registry on a migrated database (exits with a clear message otherwise)."""
    from service.registry.database import SchemaError, check_schema, make_engine
    from service.registry.models import ModelRegistry

    engine = make_engine(_database_url(database_url))
    try:
        check_schema(engine)
    except SchemaError as exc:
        raise _fail(str(exc)) from None
    return ModelRegistry(engine)


def _registry_call(action: Any) -> Any:
    from service.bundle import BundleError
    from service.errors import NotespaceError

    try:
        return action()
    except (NotespaceError, BundleError) as exc:
        raise _fail(str(exc)) from None


def _print_models(rows: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "model", "status", "objective", "dim", "registered", "activated")
    for r in rows:
        table.add_row(
            str(r.id),
            r.ref,
            r.status,
            r.objective,
            str(r.embedding_dim),
            f"{r.created_at:%Y-%m-%d %H:%M} by {r.registered_by}",
            f"{r.activated_at:%Y-%m-%d %H:%M}" if r.activated_at else "",
        )
    Console().print(table)


@models_app.command("register")
def models_register(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    registered_by: Annotated[
        str | None, typer.Option("--by", help="who registers it [default: OS user]")
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Verify a bundle's hashes and add it to the registry as staged."""
    import getpass

    from service.bundle import load_bundle

    reg = registry(database_url)
    row = _registry_call(
        lambda: reg.register(load_bundle(bundle_dir), registered_by or getpass.getuser())
    )
    typer.echo(f"registered {row.ref} (id {row.id}, {row.status})")


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option(help="only this model name")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """List registered model versions."""
    _print_models(registry(database_url).list(name))


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="id or NAME@VERSION")],
    database_url: DatabaseOption = None,
) -> None:
    """Show one version with its lineage and evaluation metrics (JSON)."""
    import json

    from service.serving import describe

    reg = registry(database_url)
    row = _registry_call(lambda: reg.get(ref))
    typer.echo(json.dumps(describe(row, serving_ref=""), indent=2, default=str))


@models_app.command("promote")
def models_promote(
    ref: Annotated[str, typer.Argument(help="id or NAME@VERSION")],
    database_url: DatabaseOption = None,
) -> None:
    """Make a version active; running services switch to it within their poll interval."""
    reg = registry(database_url)
    row = _registry_call(lambda: reg.promote(ref))
    typer.echo(f"{row.ref} is active")


@models_app.command("retire")
def models_retire(
    ref: Annotated[str, typer.Argument(help="id or NAME@VERSION")],
    database_url: DatabaseOption = None,
) -> None:
    """Retire a version that is not serving; it can no longer be promoted."""
    reg = registry(database_url)
    row = _registry_call(lambda: reg.retire(ref))
    typer.echo(f"{row.ref} is retired")


@index_app.command("rebuild")
def index_rebuild(
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or id [default: the active model]")
    ] = None,
    batch_notes: Annotated[int, typer.Option(help="notes embedded per step")] = 64,
    database_url: DatabaseOption = None,
) -> None:
    """Re-embed stored notes with a model version and write its index snapshot.

    Runs beside a serving service (it only adds vectors for that version); a promotion can
    then wait for the index to be complete.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from service.index_rebuild import rebuild_index

    settings = _settings(**({"database_url": database_url} if database_url else {}))
    reg = registry(database_url)
    row = _registry_call(lambda: reg.get(model) if model else reg.active(settings.model_name))
    if row is None:
        raise _fail("no active model; name one with --model NAME@VERSION")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task(f"embedding notes for {row.ref}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = _registry_call(lambda: rebuild_index(settings, row, batch_notes, report))
    typer.echo(
        f"{row.ref}: embedded {result.embedded} notes, index holds {result.index_rows} of "
        f"{result.live_notes} notes (watermark {result.watermark})"
    )
    if result.without_text:
        raise _fail(
            f"{result.without_text} notes were stored without text and could not be "
            "re-embedded; send them again through POST /notes"
        )


@index_app.command("stats")
def index_stats(database_url: DatabaseOption = None) -> None:
    """Per model version: stored notes, vectors, snapshot watermark."""
    from rich.console import Console
    from rich.table import Table

    from service.index_rebuild import coverage_report

    settings = _settings(**({"database_url": database_url} if database_url else {}))
    reg = registry(database_url)
    table = Table("model", "status", "live notes", "vectors", "coverage", "snapshot")
    for line in coverage_report(settings, reg.list()):
        table.add_row(*line)
    Console().print(table)


def _load_plugins() -> None:
    for entry in entry_points(group="notespace.cli"):
        register = entry.load()
        register(app)


def main() -> None:
    _load_plugins()
    app()
