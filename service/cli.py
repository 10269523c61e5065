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
    log_level: Annotated[
        str, typer.Option(help="critical, error, warning, info or debug")
    ] = "info",
) -> None:
    """Run the HTTP service."""
    import sys

    import uvicorn

    from service.app import create_app
    from service.server import server_config

    # No "trace": uvicorn's trace level logs every ASGI message, headers (keys) included.
    if log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
        raise typer.BadParameter("log level must be critical, error, warning, info or debug")
    settings = _settings(host=host, port=port, bundle_path=bundle, device=device)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    server = uvicorn.Server(server_config(create_app(settings), settings, log_level=log_level))
    server.run()
    if not server.started:
        sys.exit(3)  # as uvicorn.run: the app did not start


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
models_app = typer.Typer(
    help="The model registry: register, list, promote, retire.", no_args_is_help=True
)
index_app = typer.Typer(help="Note vector indexes: rebuild and statistics.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")
keys_app = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail, for information governance.", no_args_is_help=True)
app.add_typer(index_app, name="index")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

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


def _print_models(rows: Any, checks: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "id", "model", "status", "objective", "dim", "registered", "activated", "last check"
    )
    for r in rows:
        check = checks.get(r.id)
        table.add_row(
            str(r.id),
            r.ref,
            r.status,
            r.objective,
            str(r.embedding_dim),
            f"{r.created_at:%Y-%m-%d %H:%M} by {r.registered_by}",
            f"{r.activated_at:%Y-%m-%d %H:%M}" if r.activated_at else "",
            f"{check.outcome} vs {check.against_ref or '-'}" if check else "",
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
    """List registered model versions, each with its latest promotion check."""
    reg = registry(database_url)
    _print_models(reg.list(name), reg.latest_checks())


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="id or NAME@VERSION")],
    database_url: DatabaseOption = None,
) -> None:
    """Show one version with its lineage, evaluation metrics and latest promotion check (JSON)."""
    import json

    from service.serving import describe

    reg = registry(database_url)
    row = _registry_call(lambda: reg.get(ref))
    check = reg.latest_check(row.id)
    typer.echo(json.dumps(describe(row, serving_ref="", check=check), indent=2, default=str))


def _single_active_ref(reg: Any, settings: Any) -> str | None:
    """The model a new name's first promotion replaces: the one active model (or the active
    version of NOTESPACE_MODEL_NAME); None when several are active or none is."""
    from service.errors import Conflict

    try:
        row = reg.active(settings.model_name)
    except Conflict:
        return None
    return row.ref if row is not None else None


@models_app.command("promote")
def models_promote(
    ref: Annotated[str, typer.Argument(help="id or NAME@VERSION")],
    force: Annotated[
        bool,
        typer.Option("--force", help="both overrides below (--force-index --force-regression)"),
    ] = False,
    force_index: Annotated[
        bool, typer.Option("--force-index", help="promote even if its index misses stored notes")
    ] = False,
    force_regression: Annotated[
        bool,
        typer.Option(
            "--force-regression",
            help="promote even if the promotion guard refuses it (recorded as forced)",
        ),
    ] = False,
    promoted_by: Annotated[
        str | None, typer.Option("--by", help="who promotes it [default: OS user]")
    ] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Make a version active; running services switch to it within their poll interval.

    Refused while the version's index misses stored notes (--force-index), and when its
    evaluation-suite results are worse than the active version's beyond the margin
    (NOTESPACE_PROMOTION_MARGIN; --force-regression). Every comparison is recorded.
    """
    import getpass

    from service.registry.database import make_engine
    from service.registry.notes import NoteStore
    from service.serving import PromotionOverrides, authorise_promotion

    settings = _settings(**({"database_url": database_url} if database_url else {}))
    reg = registry(database_url)
    store = NoteStore(make_engine(_database_url(database_url)), store_text=True)
    overrides = PromotionOverrides.from_flags(
        force=force, force_index=force_index, force_regression=force_regression
    )
    target = _registry_call(lambda: reg.get(ref))
    guarded = _registry_call(
        lambda: authorise_promotion(
            reg,
            store,
            settings,
            target,
            overrides,
            requested_by=f"{promoted_by or getpass.getuser()} via CLI",
            fallback_ref=_single_active_ref(reg, settings),
        )
    )
    row = _registry_call(lambda: reg.promote(ref, guarded=guarded))
    if guarded is not None:
        check = guarded.check
        colour = "yellow" if check.outcome in ("forced", "not_comparable") else "green"
        typer.secho(f"promotion check {check.outcome}: {check.reason}", fg=colour, err=True)
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


def _key_store(database_url: str | None) -> Any:
    from service.security import KeyStore

    registry(database_url)  # exits clearly on an un-migrated database
    from service.registry.database import make_engine

    return KeyStore(make_engine(_database_url(database_url)))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who or what uses the key, e.g. epr-integration")],
    scopes: Annotated[
        str, typer.Option(help="comma-separated: embed, classify, search, index, admin")
    ],
    requests_per_minute: Annotated[int | None, typer.Option(min=1)] = None,
    tokens_per_minute: Annotated[int | None, typer.Option(min=1)] = None,
    created_by: Annotated[str | None, typer.Option("--by", help="[default: OS user]")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Create a key. It is printed once and only its hash is stored: keep it safe."""
    import getpass

    from service.security import parse_scopes

    try:
        scope_list = parse_scopes(scopes)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    created = _key_store(database_url).create(
        name,
        scope_list,
        created_by or getpass.getuser(),
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
    )
    typer.echo(created.key)
    typer.secho(
        f"key {created.row.key_id} ({name}; scopes {created.row.scopes}) - shown once, "
        "store it now",
        err=True,
        fg="yellow",
    )


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys (ids, names, scopes, quotas, state); never the keys themselves."""
    from rich.console import Console
    from rich.table import Table

    table = Table("key id", "name", "scopes", "quota", "created", "state")
    for k in _key_store(database_url).list():
        quota = ", ".join(
            q
            for q in (
                f"{k.requests_per_minute} req/min" if k.requests_per_minute else "",
                f"{k.tokens_per_minute} tok/min" if k.tokens_per_minute else "",
            )
            if q
        )
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        table.add_row(
            k.key_id, k.name, k.scopes, quota, f"{k.created_at:%Y-%m-%d} by {k.created_by}", state
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key id shown by `keys list`")],
    database_url: DatabaseOption = None,
) -> None:
    """Revoke a key; running services refuse it from the next request."""
    row = _key_store(database_url).revoke(key_id)
    if row is None:
        raise _fail(f"no key with id {key_id}")
    typer.echo(f"key {row.key_id} ({row.name}) revoked")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option(help="file to write [default: stdout]")] = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "csv",
    since: Annotated[str | None, typer.Option(help="ISO time, inclusive")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time, exclusive")] = None,
    database_url: DatabaseOption = None,
) -> None:
    """Export audit entries: who, when, what action, how many items, which model, result ids."""
    import json
    import sys
    from datetime import datetime

    from service.audit import AuditLog, export_rows, write_csv
    from service.registry.database import make_engine

    if output_format not in ("csv", "jsonl"):
        raise typer.BadParameter("format must be csv or jsonl")
    try:
        start = datetime.fromisoformat(since) if since else None
        end = datetime.fromisoformat(until) if until else None
    except ValueError as exc:
        raise typer.BadParameter(f"--since/--until must be ISO times: {exc}") from None
    registry(database_url)
    log = AuditLog(make_engine(_database_url(database_url)))
    rows = export_rows(log.entries(start, end))
    handle = out.open("w", newline="", encoding="utf-8") if out else sys.stdout
    try:
        if output_format == "jsonl":
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        else:
            write_csv(rows, handle)  # spreadsheet-safe: client-chosen values cannot run
    finally:
        if out:
            handle.close()


def _load_plugins() -> None:
    for entry in entry_points(group="notespace.cli"):
        register = entry.load()
        register(app)


def main() -> None:
    _load_plugins()
    app()
