"""`notespace adapt NOTES_FILE`: the command around training/adapt/pipeline.py."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path
from typing import Annotated

import typer

from training.adapt.plan import DEFAULT_ALPHAS, RECIPES_DIR


def adapt(
    notes_file: Annotated[
        Path,
        typer.Argument(help="the trust's notes: CSV, TSV, JSONL or Parquet", show_default=False),
    ],
    text_column: Annotated[str, typer.Option(help="column holding the note text")],
    out: Annotated[Path, typer.Option(help="bundle directory to write, e.g. bundles/NAME")],
    id_column: Annotated[str | None, typer.Option(help="column holding a note id")] = None,
    group_column: Annotated[
        str | None,
        typer.Option(help="patient or admission column: its notes stay on one side of a split"),
    ] = None,
    category_column: Annotated[
        str | None, typer.Option(help="note category column (optional metadata)")
    ] = None,
    label_column: Annotated[str | None, typer.Option(help="a label column (optional)")] = None,
    file_format: Annotated[
        str | None,
        typer.Option("--format", help="csv, tsv, jsonl or parquet [default: from the suffix]"),
    ] = None,
    exclude_ids: Annotated[
        Path | None,
        typer.Option(help="note ids (one per line) never to train on, e.g. an evaluation set"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="model name [default: --out's name]")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1",
    work_dir: Annotated[
        Path | None,
        typer.Option(help="checkpoints, scores and the report [default: runs/adapt/NAME]"),
    ] = None,
    recipe: Annotated[Path, typer.Option(help="training recipe YAML")] = RECIPES_DIR
    / "default.yaml",
    base: Annotated[
        Path | None,
        typer.Option(help="local Hugging Face encoder to adapt [default: all-MiniLM-L6-v2]"),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="training seed [default: the recipe's]")] = None,
    alpha: Annotated[
        list[float] | None,
        typer.Option(help="mixing weights to try (repeat) [default: 0.1 … 0.8, 1]", min=0, max=1),
    ] = None,
    register: Annotated[
        bool, typer.Option(help="add the bundle to the model registry (staged) with its report")
    ] = False,
    suite: Annotated[
        str | None,
        typer.Option(help="evaluation suite to run on the bundle against its base (test split)"),
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="folder the suite's relative data paths start from")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue a stopped run in --work-dir")] = False,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Adapt the encoder to a trust's own notes, label-free: train the default recipe, choose
    the mixing weight with the base on held-out notes, export and check the bundle, and write
    a report (optionally registered as staged, and evaluated on a suite)."""
    from training.adapt.pipeline import adapt as run_adapt
    from training.adapt.plan import AdaptPlan, Columns
    from training.errors import TrainingError
    from training.export import ExportError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    model_name = name or out.name
    plan = AdaptPlan(
        notes_file=notes_file,
        columns=Columns(
            text=text_column,
            note_id=id_column,
            group=group_column,
            category=category_column,
            label=label_column,
        ),
        out=out,
        work_dir=work_dir or Path("runs") / "adapt" / model_name,
        name=model_name,
        version=version,
        fmt=file_format,
        exclude_ids=exclude_ids,
        recipe=recipe,
        base=base,
        seed=seed,
        alphas=tuple(sorted(set(alpha))) if alpha else DEFAULT_ALPHAS,
        threads=threads,
    )
    try:
        result = run_adapt(plan, resume=resume, progress=progress, say=typer.echo)
    except (TrainingError, ExportError) as exc:
        typer.secho(f"adapt failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if register or suite:
        from training.adapt.registration import register_and_evaluate

        register_and_evaluate(
            plan,
            result,
            register=register,
            suite=suite,
            data_root=data_root,
            user=getpass.getuser(),
        )
    total = sum(s.seconds for s in result.stages)
    typer.echo(f"adapted {plan.name}@{plan.version} in {total / 60:.1f} min: {result.bundle}")
