"""`notespace models`: the model registry (register, list, show, promote, retire)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import (
    DatabaseOption,
    JsonOption,
    clean,
    database_url,
    open_registry,
    print_json,
    print_table,
    settings,
)

app = typer.Typer(help="The model registry: register, list, promote, retire.", no_args_is_help=True)
RefArgument = Annotated[str, typer.Argument(help="id or NAME@VERSION")]


@app.command("register")
def models_register(
    bundle_dir: Annotated[Path, typer.Argument(help="model bundle directory")],
    registered_by: Annotated[
        str | None, typer.Option("--by", help="who registers it [default: OS user]")
    ] = None,
    url: DatabaseOption = None,
) -> None:
    """Verify a bundle's hashes and add it to the registry as staged."""
    from service.bundle import load_bundle

    registry = open_registry(url)
    row = clean(
        lambda: registry.register(load_bundle(bundle_dir), registered_by or getpass.getuser())
    )
    typer.echo(f"registered {row.ref} (id {row.id}, {row.status})")


@app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option(help="only this model name")] = None,
    as_json: JsonOption = False,
    url: DatabaseOption = None,
) -> None:
    """List registered model versions, each with its latest promotion check."""
    from service.orchestration.catalogue import model_views

    registry = open_registry(url)
    views = model_views(registry.list(name), registry.latest_checks(), _serving)
    if as_json:
        print_json([v.model_dump(mode="json") for v in views])
        return
    print_table(
        ("id", "model", "status", "objective", "dim", "registered", "activated", "last check"),
        [
            (
                str(v.id),
                v.ref,
                v.status,
                v.objective,
                str(v.embedding_dim),
                f"{v.created_at:%Y-%m-%d %H:%M} by {v.registered_by}" if v.created_at else "",
                f"{v.activated_at:%Y-%m-%d %H:%M}" if v.activated_at else "",
                (
                    f"{v.promotion_check.outcome} vs {v.promotion_check.against or '-'}"
                    if v.promotion_check
                    else ""
                ),
            )
            for v in views
        ],
    )


@app.command("show")
def models_show(ref: RefArgument, url: DatabaseOption = None) -> None:
    """Show one version with its lineage, evaluation metrics and latest promotion check (JSON).

    `serving` is true for an active version: running services serve it (they pick up a
    promotion within NOTESPACE_REGISTRY_POLL_S)."""
    from service.orchestration.catalogue import ModelView

    registry = open_registry(url)
    row = clean(lambda: registry.get(ref))
    view = ModelView.of(row, serving=_serving(row), check=registry.latest_check(row.id))
    print_json(view.model_dump(mode="json"))


def _serving(row: object) -> bool:
    return getattr(row, "status", None) == "active"


@app.command("promote")
def models_promote(
    ref: RefArgument,
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
    url: DatabaseOption = None,
) -> None:
    """Make a version active; running services switch to it within their poll interval.

    Refused while the version's index misses stored notes (--force-index), and when its
    evaluation-suite results are worse than the active version's beyond the margin
    (NOTESPACE_PROMOTION_MARGIN; --force-regression). Every comparison is recorded.
    """
    from service.errors import Conflict
    from service.orchestration.promotion import PromotionGate, PromotionOverrides
    from service.registry.database import make_engine
    from service.registry.notes import NoteStore

    config = settings(**({"database_url": url} if url else {}))
    registry = open_registry(url)
    store = NoteStore(make_engine(database_url(url)), store_text=True)
    gate = PromotionGate(registry, store, config)
    try:  # a new name's first promotion replaces the one active model, if there is one
        single = registry.active(config.model_name)
    except Conflict:
        single = None
    row, guarded = clean(
        lambda: gate.promote(
            ref,
            PromotionOverrides.from_flags(
                force=force, force_index=force_index, force_regression=force_regression
            ),
            requested_by=f"{promoted_by or getpass.getuser()} via CLI",
            fallback_ref=single.ref if single is not None else None,
        )
    )
    if guarded is not None:
        check = guarded.check
        colour = "yellow" if check.outcome in ("forced", "not_comparable") else "green"
        typer.secho(f"promotion check {check.outcome}: {check.reason}", fg=colour, err=True)
    typer.echo(f"{row.ref} is active")


@app.command("retire")
def models_retire(ref: RefArgument, url: DatabaseOption = None) -> None:
    """Retire a version that is not serving; it can no longer be promoted."""
    registry = open_registry(url)
    row = clean(lambda: registry.retire(ref))
    typer.echo(f"{row.ref} is retired")
