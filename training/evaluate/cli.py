"""`notespace evaluate` and `notespace head train`: typer commands (heavy imports inside)."""

from __future__ import annotations

import getpass
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DataOption = Annotated[Path, typer.Option("--data", help="labelled notes (CSV/JSONL/Parquet)")]
FormatOption = Annotated[
    str, typer.Option("--format", help="mtsamples | csv | jsonl | parquet | mimic")
]
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
        from service.cli import registry

        return registry(database_url)

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
    data: DataOption,
    out: Annotated[Path, typer.Option(help="report directory (markdown, JSON, PNGs)")],
    fmt: FormatOption = "mtsamples",
    task: Annotated[str, typer.Option(help="'label' or 'category'")] = "label",
    n: Annotated[list[str], typer.Option("--n", help="examples per class, or 'all'")] = [  # noqa: B006
        "16",
        "64",
        "128",
        "all",
    ],
    seeds: Annotated[int, typer.Option(help="seeds per N")] = 5,
    test_ids: TestIdsOption = None,
    min_per_class: Annotated[
        int | None,
        typer.Option(help="drop classes with fewer training examples [default: largest N]"),
    ] = None,
    max_test: Annotated[int | None, typer.Option(help="cap on held-out notes")] = None,
    long_note: Annotated[str, typer.Option(help="chunk | truncate (frozen embeddings)")] = "chunk",
    finetune_n: Annotated[
        list[str] | None, typer.Option("--finetune-n", help="N values to fine-tune at")
    ] = None,
    finetune_seeds: Annotated[int, typer.Option(help="seeds per fine-tuned N")] = 5,
    finetune_epochs: Annotated[int, typer.Option(help="fine-tuning epochs")] = 4,
    finetune_max_length: Annotated[int, typer.Option(help="tokens per note")] = 256,
    export_max_tokens: Annotated[
        int | None, typer.Option(help="window size when exporting checkpoints to bundles")
    ] = None,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    no_plots: Annotated[bool, typer.Option("--no-plots", help="skip t-SNE pictures")] = False,
    database_url: Annotated[str | None, typer.Option(help="registry database URL")] = None,
) -> None:
    """Compare models on few-shot classification and embedding-space metrics."""
    import torch

    from training.evaluate.data import (
        EvaluationError,
        build_eval_set,
        load_notes,
        parse_n,
    )
    from training.evaluate.models import resolve_model
    from training.evaluate.report import EvalConfig, registry_summary, run_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(threads)
    started = time.perf_counter()
    try:
        if task not in ("label", "category"):
            raise EvaluationError(f"--task must be 'label' or 'category', not {task!r}")
        if long_note not in ("chunk", "truncate"):
            raise EvaluationError(f"--long-note must be chunk or truncate, not {long_note!r}")
        ns = [parse_n(v) for v in n]
        ft_ns = [parse_n(v) for v in finetune_n or []]
        finite = [x for x in ns + ft_ns if x != "all"]
        floor = min_per_class if min_per_class is not None else max(finite, default=2)
        eval_set = build_eval_set(
            load_notes(data, fmt),  # type: ignore[arg-type]
            task=task,  # type: ignore[arg-type]
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
            resolve_model(spec, out, registry=registry, max_tokens=export_max_tokens)
            for spec in models
        ]
        config = EvalConfig(
            ns=ns,
            seeds=seeds,
            policy=long_note,  # type: ignore[arg-type]
            threads=threads,
            finetune_ns=ft_ns,
            finetune_seeds=finetune_seeds,
            finetune_epochs=finetune_epochs,
            finetune_max_length=finetune_max_length,
            plots=not no_plots,
        )
        report = run_report(
            sources,
            eval_set,
            config,
            out,
            data_description=f"{data.name} ({fmt}), task {task}",
            progress=typer.echo,
        )
    except EvaluationError as exc:
        typer.secho(f"evaluate failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
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
    typer.echo(f"wrote {out / 'report.md'} in {time.perf_counter() - started:.0f} s")


def head_train(
    bundle: Annotated[Path, typer.Option(help="bundle to add the head to")],
    data: DataOption,
    out: Annotated[Path, typer.Option(help="directory of the new bundle")],
    fmt: FormatOption = "mtsamples",
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
    from training.evaluate.data import EvaluationError, build_eval_set, load_notes
    from training.evaluate.head import build_head_bundle
    from training.evaluate.models import embed_texts, load_runtime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        eval_set = build_eval_set(
            load_notes(data, fmt),  # type: ignore[arg-type]
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
            data_description=f"{data.name} ({fmt}) note categories",
            test=eval_set.test,
            x_test=x_test,
        )
    except EvaluationError as exc:
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
