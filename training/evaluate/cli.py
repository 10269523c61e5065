"""`notespace evaluate` and `notespace head train`: typer commands (heavy imports inside)."""

from __future__ import annotations

import getpass
import logging
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from training.data.notes import ColumnMap


class NoteFormat(StrEnum):
    """How --data is read: a table (its columns named by the --*-column options), or a known
    data set's own layout."""

    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"
    MTSAMPLES = "mtsamples"
    MIMIC = "mimic"


class Task(StrEnum):
    LABEL = "label"
    CATEGORY = "category"


class Split(StrEnum):
    TEST = "test"
    VAL = "val"


class LongNote(StrEnum):
    CHUNK = "chunk"
    TRUNCATE = "truncate"


DataOption = Annotated[Path, typer.Option("--data", help="labelled notes (CSV/JSONL/Parquet)")]
FormatOption = Annotated[
    NoteFormat,
    typer.Option("--format", help="csv, jsonl, parquet (columns below), mtsamples or mimic"),
]
TextColumn = Annotated[str, typer.Option(help="tables: the column holding the note text")]
IdColumn = Annotated[
    str, typer.Option(help="tables: the note id column ('' for none: ids are row numbers)")
]
CategoryColumn = Annotated[str, typer.Option(help="tables: the note category column")]
LabelColumn = Annotated[str, typer.Option(help="tables: the label column (task label only)")]
GroupColumn = Annotated[
    str | None,
    typer.Option(help="tables: a patient / encounter column the splits keep together"),
]


def _columns(
    text: str, note_id: str, category: str | None, label: str | None, group: str | None
) -> ColumnMap:
    """The table columns to read: only those the task needs are required."""
    from training.data.notes import ColumnMap

    return ColumnMap(
        text=text, note_id=note_id or None, category=category, label=label, group=group
    )


TestIdsOption = Annotated[
    Path | None,
    typer.Option(
        "--test-ids",
        help="held-out note ids, one per line (a training run's test_note_ids.txt); "
        "default: a seeded 20% group split",
    ),
]


def _registry_factory(database_url: str | None) -> Any:
    def factory() -> Any:
        from service.cli.common import open_registry

        return open_registry(database_url)

    return factory


def _read_ids(path: Path | None) -> set[str] | None:
    from training.evaluate.data import EvaluationError

    if path is None:
        return None
    if not path.is_file():
        raise EvaluationError(f"--test-ids file not found: {path}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def evaluate(
    models: Annotated[
        list[str],
        typer.Option(
            "--models",
            help="[LABEL=]bundle dir | checkpoint dir | 'base' | NAME@VERSION (repeat)",
        ),
    ],
    out: Annotated[Path, typer.Option(help="report directory (markdown, JSON, PNGs)")],
    suite: Annotated[
        str | None,
        typer.Option(help="a suite: a name in training/configs/suites/ (e.g. default) or a YAML"),
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help="suite mode: folder the tasks' relative paths start from"),
    ] = None,
    split: Annotated[
        Split, typer.Option(help="suite mode: test, or val to choose settings on validation data")
    ] = Split.TEST,
    baseline: Annotated[
        str | None,
        typer.Option(help="suite mode: model label the others are paired with [default: first]"),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="suite mode: embedding cache [default: OUT/cache]")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="single-task mode: labelled notes (CSV/JSONL/Parquet)"),
    ] = None,
    fmt: FormatOption = NoteFormat.MTSAMPLES,
    text_column: TextColumn = "text",
    id_column: IdColumn = "note_id",
    category_column: CategoryColumn = "category",
    label_column: LabelColumn = "label",
    group_column: GroupColumn = None,
    task: Annotated[Task, typer.Option(help="classify notes by label or by category")] = Task.LABEL,
    n: Annotated[
        list[str] | None,
        typer.Option("--n", help="examples per class, or 'all' [default: 16 64 128 all]"),
    ] = None,
    seeds: Annotated[int | None, typer.Option(help="seeds per N [default: 5]")] = None,
    test_ids: TestIdsOption = None,
    min_per_class: Annotated[
        int | None,
        typer.Option(help="drop classes with fewer training examples [default: largest N]"),
    ] = None,
    max_test: Annotated[int | None, typer.Option(help="cap on held-out notes")] = None,
    long_note: Annotated[
        LongNote, typer.Option(help="long notes, frozen embeddings: chunk or truncate")
    ] = LongNote.CHUNK,
    finetune_n: Annotated[
        list[str] | None, typer.Option("--finetune-n", help="N values to fine-tune at")
    ] = None,
    finetune_seeds: Annotated[int, typer.Option(help="seeds per fine-tuned N")] = 5,
    finetune_max_steps: Annotated[
        int, typer.Option(help="fine-tuning: optimiser steps at most")
    ] = 200,
    finetune_eval_every: Annotated[
        int, typer.Option(help="fine-tuning: validation macro-F1 every K steps")
    ] = 10,
    finetune_patience: Annotated[
        int, typer.Option(help="fine-tuning: stop after P evaluations without a gain")
    ] = 5,
    finetune_epochs: Annotated[
        int | None,
        typer.Option(help="the old protocol: E fixed epochs, best epoch, no early stopping"),
    ] = None,
    finetune_max_length: Annotated[int, typer.Option(help="tokens per note")] = 256,
    export_max_tokens: Annotated[
        int | None, typer.Option(help="window size when exporting checkpoints to bundles")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="skip the PNG pictures")] = False,
    database_url: Annotated[str | None, typer.Option(help="registry database URL")] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="suite mode: NAME=LABEL,LABEL,... pools models trained with different seeds "
            "into one candidate (its interval resamples the seeds too); repeat for more"
        ),
    ] = None,
) -> None:
    """Compare models: on a suite of tasks (--suite), or on one labelled note set (--data)."""
    import torch

    from training.errors import TrainingError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        if (suite is None) == (data is None):
            raise typer.BadParameter("give exactly one of --suite and --data")
        if suite is not None:
            single_only = {
                "--n": n,
                "--seeds": seeds,
                "--test-ids": test_ids,
                "--finetune-n": finetune_n,
                "--max-test": max_test,
            }
            if given := [k for k, v in single_only.items() if v]:
                raise typer.BadParameter(
                    f"{', '.join(given)}: single-task options; a suite sets these in its YAML"
                )
            _evaluate_suite(
                models,
                suite,
                out,
                data_root=data_root,
                split=split,
                baseline=baseline,
                cache_dir=cache_dir,
                export_max_tokens=export_max_tokens,
                threads=threads,
                plots=not no_plots,
                database_url=database_url,
                groups=_groups(group or []),
            )
        else:
            assert data is not None
            _evaluate_single(
                models,
                data,
                out,
                fmt=fmt,
                columns=_columns(
                    text_column,
                    id_column,
                    category_column,
                    label_column if task is Task.LABEL else None,
                    group_column,
                ),
                task=task,
                n=n or ["16", "64", "128", "all"],
                seeds=seeds or 5,
                test_ids=test_ids,
                min_per_class=min_per_class,
                max_test=max_test,
                long_note=long_note,
                finetune_n=finetune_n or [],
                finetune_seeds=finetune_seeds,
                finetune_schedule=(
                    finetune_epochs,
                    finetune_max_steps,
                    finetune_eval_every,
                    finetune_patience,
                ),
                finetune_max_length=finetune_max_length,
                export_max_tokens=export_max_tokens,
                threads=threads,
                plots=not no_plots,
                database_url=database_url,
            )
    except TrainingError as exc:  # EvaluationError, CorpusError: one line, no traceback
        typer.secho(f"evaluate failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {out / 'report.md'} in {time.perf_counter() - started:.0f} s")


def _evaluate_suite(
    models: list[str],
    suite: str,
    out: Path,
    *,
    data_root: Path | None,
    split: Split,
    baseline: str | None,
    cache_dir: Path | None,
    export_max_tokens: int | None,
    threads: int,
    plots: bool,
    database_url: str | None,
    groups: dict[str, list[str]],
) -> None:
    from training.evaluate.suite.runner import RunConfig, run_suite

    config = RunConfig(
        data_root=data_root,
        threads=threads,
        baseline=baseline,
        cache_dir=cache_dir,
        registry=_registry_factory(database_url),
        export_max_tokens=export_max_tokens,
        plots=plots,
        progress=typer.echo,
        groups=groups,
    )
    run_suite(models, suite, config, out, split=split.value)


def _groups(specs: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, members = spec.partition("=")
        labels = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name or not labels:
            raise typer.BadParameter(f"--group {spec!r}: write NAME=LABEL,LABEL,...")
        groups[name] = labels
    return groups


def _evaluate_single(
    models: list[str],
    data: Path,
    out: Path,
    *,
    fmt: NoteFormat,
    columns: ColumnMap,
    task: Task,
    n: list[str],
    seeds: int,
    test_ids: Path | None,
    min_per_class: int | None,
    max_test: int | None,
    long_note: LongNote,
    finetune_n: list[str],
    finetune_seeds: int,
    finetune_schedule: tuple[int | None, int, int, int],
    finetune_max_length: int,
    export_max_tokens: int | None,
    threads: int,
    plots: bool,
    database_url: str | None,
) -> None:
    from training.evaluate.data import build_eval_set, load_notes, parse_n
    from training.evaluate.models import resolve_model
    from training.evaluate.report import EvalConfig, registry_summary, run_report

    ns = [parse_n(v) for v in n]
    ft_ns = [parse_n(v) for v in finetune_n]
    finite = [x for x in ns + ft_ns if x != "all"]
    floor = min_per_class if min_per_class is not None else max(finite, default=2)
    eval_set = build_eval_set(
        load_notes(data, fmt.value, columns),
        task=task.value,
        test_ids=_read_ids(test_ids),
        min_per_class=floor,
        max_test=max_test,
    )
    typer.echo(
        f"{task}: {len(eval_set.classes)} classes, counts {eval_set.counts()}; "
        f"dropped {eval_set.dropped_classes}"
    )
    registry = _registry_factory(database_url)
    sources = [
        resolve_model(spec, out, registry=registry, max_tokens=export_max_tokens) for spec in models
    ]
    epochs, max_steps, eval_every, patience = finetune_schedule
    config = EvalConfig(
        ns=ns,
        seeds=seeds,
        policy=long_note.value,
        threads=threads,
        finetune_ns=ft_ns,
        finetune_seeds=finetune_seeds,
        finetune_epochs=epochs,
        finetune_max_steps=max_steps,
        finetune_eval_every=eval_every,
        finetune_patience=patience,
        finetune_max_length=finetune_max_length,
        plots=plots,
    )
    report = run_report(
        sources,
        eval_set,
        config,
        out,
        data_description=f"{data.name} ({fmt.value}), task {task.value}",
        progress=typer.echo,
    )
    for source in sources:
        if source.registry_ref is not None:
            reg = registry()
            row = reg.get(source.registry_ref)
            merged = {
                **(row.eval_metrics or {}),
                "downstream": registry_summary(report, source.label),
            }
            reg.set_eval_metrics(source.registry_ref, merged)
            typer.echo(f"stored metrics on {source.registry_ref}")


def head_train(
    bundle: Annotated[Path, typer.Option(help="bundle to add the head to")],
    data: DataOption,
    out: Annotated[Path, typer.Option(help="directory of the new bundle")],
    fmt: FormatOption = NoteFormat.MTSAMPLES,
    text_column: TextColumn = "text",
    id_column: IdColumn = "note_id",
    category_column: CategoryColumn = "category",
    group_column: GroupColumn = None,
    version: Annotated[str | None, typer.Option(help="new version [default: VERSION+head]")] = None,
    test_ids: TestIdsOption = None,
    min_per_class: Annotated[int, typer.Option(help="drop rarer categories")] = 10,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output")] = False,
    register: Annotated[bool, typer.Option(help="register the new bundle (staged)")] = False,
    database_url: Annotated[str | None, typer.Option(help="registry database URL")] = None,
) -> None:
    """Train a note-category head on frozen embeddings; write it into a new bundle version."""
    from service.bundle import load_bundle
    from training.errors import TrainingError
    from training.evaluate.data import build_eval_set, load_notes
    from training.evaluate.head import build_head_bundle
    from training.evaluate.models import embed_texts, load_runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    columns = _columns(text_column, id_column, category_column, None, group_column)
    try:
        eval_set = build_eval_set(
            load_notes(data, fmt.value, columns),
            task="category",
            test_ids=_read_ids(test_ids),
            min_per_class=min_per_class,
        )
        runtime = load_runtime(bundle, threads)
        x_train = embed_texts(runtime, [x.text for x in eval_set.train])
        x_val = embed_texts(runtime, [x.text for x in eval_set.val])
        x_test = embed_texts(runtime, [x.text for x in eval_set.test]) if eval_set.test else None
        result = build_head_bundle(
            bundle,
            out,
            eval_set.train,
            eval_set.val,
            x_train,
            x_val,
            version=version,
            overwrite=overwrite,
            data_description=f"{data.name} ({fmt.value}) note categories",
            test=eval_set.test,
            x_test=x_test,
        )
    except TrainingError as exc:  # EvaluationError, CorpusError: one line, no traceback
        typer.secho(f"head train failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    m = result.manifest
    typer.echo(
        f"wrote {out}: {m.ref} with a {len(m.labels or [])}-category head, validation "
        f"macro-F1 {result.val_scores['macro_f1']:.3f}, accuracy "
        f"{result.val_scores['accuracy']:.3f}"
    )
    if result.test_scores is not None:
        typer.echo(
            f"held-out test ({len(eval_set.test)} notes): macro-F1 "
            f"{result.test_scores['macro_f1']:.3f}, accuracy {result.test_scores['accuracy']:.3f}"
        )
    if register:
        row = _registry_factory(database_url)().register(load_bundle(out), getpass.getuser())
        typer.echo(f"registered {row.ref} (id {row.id}, {row.status})")


def register_commands(app: typer.Typer) -> None:
    app.command(name="evaluate")(evaluate)
    head_app = typer.Typer(help="The note-category head of a bundle.", no_args_is_help=True)
    head_app.command(name="train")(head_train)
    app.add_typer(head_app, name="head")
