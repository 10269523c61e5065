"""`notespace index`: re-embed stored notes under a model version, and coverage statistics."""

from __future__ import annotations

import importlib.util
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.common import (
    DatabaseOption,
    JsonOption,
    clean,
    fail,
    open_registry,
    print_json,
    print_table,
    settings,
)

if TYPE_CHECKING:
    from service.registry.tables import ModelVersion
    from service.settings import Settings

app = typer.Typer(help="Note vector indexes: rebuild and statistics.", no_args_is_help=True)


def _target_version(model: str | None, url: str | None) -> tuple[Settings, ModelVersion]:
    """The settings, and the version named by --model (else the active one) to embed with."""
    config = settings(**({"database_url": url} if url else {}))
    registry = open_registry(url)
    row = clean(lambda: registry.get(model) if model else registry.active(config.model_name))
    if row is None:
        raise fail("no active model; name one with --model NAME@VERSION")
    return config, row


@app.command("rebuild")
def index_rebuild(
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or id [default: the active model]")
    ] = None,
    batch_notes: Annotated[int, typer.Option(help="notes embedded per step", min=1)] = 64,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray",
            help="embed on Ray: a cluster address (ray://HEAD:10001 or HEAD:6379), or auto "
            "(this machine's cluster, else a local one); needs the [ray] extra",
        ),
    ] = None,
    ray_actors: Annotated[
        int, typer.Option(help="with --ray: ONNX Runtime actors (model copies)", min=1)
    ] = 2,
    ray_cpus_per_actor: Annotated[
        int, typer.Option(help="with --ray: CPUs (inference threads) per actor", min=1)
    ] = 1,
    range_notes: Annotated[
        int,
        typer.Option(help="with --ray: row ids per range (the unit of work and of resume)", min=1),
    ] = 512,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="with --ray: file recording finished ranges [default: in the index dir]"),
    ] = None,
    url: DatabaseOption = None,
) -> None:
    """Re-embed stored notes with a model version and write its index snapshot.

    Runs beside a serving service (it only adds vectors for that version); a promotion can
    then wait for the index to be complete. With --ray the notes are embedded by a Ray actor
    pool and a stopped run goes on from the ranges it recorded; the vectors are the same.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from service.orchestration.rebuild import RayRebuild, RebuildStopped, rebuild_index

    ray = None
    if ray_address is not None:
        if importlib.util.find_spec("ray") is None:
            raise fail("--ray needs Ray: pip install 'notespace[ray]'")
        ray = RayRebuild(
            address=ray_address,
            actors=ray_actors,
            cpus_per_actor=ray_cpus_per_actor,
            range_notes=range_notes,
            checkpoint=checkpoint,
        )

    config, row = _target_version(model, url)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task(f"embedding notes for {row.ref}", total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            result = clean(lambda: rebuild_index(config, row, batch_notes, report, ray=ray))
        except RebuildStopped as exc:
            raise fail(str(exc)) from None
    typer.echo(
        f"{row.ref}: embedded {result.embedded} notes, index holds {result.index_rows} of "
        f"{result.live_notes} notes (watermark {result.watermark})"
    )
    if result.without_text:
        raise fail(
            f"{result.without_text} notes were stored without text and could not be "
            "re-embedded; send them again through POST /notes"
        )


@app.command("backfill")
def index_backfill(
    archive: Annotated[Path, typer.Argument(help="a .csv, .tsv or .parquet file of notes")],
    model: Annotated[
        str | None, typer.Option("--model", help="NAME@VERSION or id [default: the active model]")
    ] = None,
    id_column: Annotated[str, typer.Option(help="the column of note ids")] = "id",
    text_column: Annotated[str, typer.Option(help="the column of note text")] = "text",
    category_column: Annotated[str | None, typer.Option(help="the note category")] = None,
    time_column: Annotated[str | None, typer.Option(help="the note time (ISO 8601)")] = None,
    source_column: Annotated[str | None, typer.Option(help="the note source")] = None,
    metadata_column: Annotated[
        list[str] | None, typer.Option(help="a column kept as metadata (repeatable)")
    ] = None,
    batch_notes: Annotated[
        int, typer.Option(help="notes embedded and committed per step", min=1)
    ] = 64,
    url: DatabaseOption = None,
) -> None:
    """Load an archive of notes into the notes table, embedded by a model version.

    Idempotent by note id: run it again after a stop and it embeds only what is not stored
    yet. A row breaking a rule stops the run, naming its row and column.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from service.orchestration.backfill import ArchiveColumns, ArchiveRejected, backfill_archive

    config, row = _target_version(model, url)
    if not archive.is_file():
        raise fail(f"{archive} is not a file")
    columns = ArchiveColumns(
        id=id_column,
        text=text_column,
        category=category_column,
        time=time_column,
        source=source_column,
        metadata=tuple(metadata_column or ()),
    )
    with Progress(SpinnerColumn(), TextColumn("{task.description}")) as progress:
        task = progress.add_task(f"loading notes for {row.ref}")

        def report(rows: int) -> None:
            progress.update(task, description=f"loading notes for {row.ref}: {rows} rows")

        try:
            result = clean(
                lambda: backfill_archive(config, row, archive, columns, batch_notes, report)
            )
        except ArchiveRejected as exc:
            raise fail(str(exc)) from None
    typer.echo(
        f"{row.ref}: {result.rows} rows, {result.created} notes created, {result.updated} "
        f"updated, {result.unchanged} unchanged"
    )


@app.command("stats")
def index_stats(as_json: JsonOption = False, url: DatabaseOption = None) -> None:
    """Per model version: stored notes, vectors, coverage, snapshot watermark."""
    from service.orchestration.rebuild import coverage_report

    config = settings(**({"database_url": url} if url else {}))
    report = coverage_report(config, open_registry(url).list())
    if as_json:
        print_json([{**asdict(line), "coverage": line.share} for line in report])
        return
    print_table(
        ("model", "status", "live notes", "vectors", "coverage", "snapshot"),
        [
            (
                line.model,
                line.status,
                str(line.live_notes),
                str(line.notes_with_vectors),
                f"{100 * line.share:.1f}%" if line.share is not None else "-",
                (
                    f"{line.snapshot_rows} rows, watermark {line.snapshot_watermark}"
                    if line.snapshot_rows is not None
                    else "none"
                ),
            )
            for line in report
        ],
    )
