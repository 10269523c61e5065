"""`notespace evaluate`: several models side by side on one labelled set; the figures (report.json
and the registry summary) are computed here, rendered as markdown by training.evaluate.markdown."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.inference.config import LongNotePolicy
from training.evaluate.classifiers import (
    Fitted,
    StepSchedule,
    fine_tune,
    frozen_head,
    logistic_probe,
)
from training.evaluate.data import EvalSet, EvaluationError, FewShotN, sample_few_shot
from training.evaluate.markdown import render_markdown
from training.evaluate.metrics import (
    SCORES,
    classification_scores,
    embedding_space_metrics,
    mean_sd,
)
from training.evaluate.models import ModelSource, Vectors, cached_embeddings
from training.evaluate.plots import plot_projection, project_2d

log = logging.getLogger(__name__)

Method = Literal["frozen_lr", "frozen_head", "finetune"]


@dataclass(frozen=True)
class EvalConfig:
    ns: list[FewShotN] = field(default_factory=lambda: [16, 64, 128, "all"])
    seeds: int = 5
    policy: LongNotePolicy = "chunk"
    threads: int = 2
    head_epochs: int = 100
    head_lr: float = 1e-3
    finetune_ns: list[FewShotN] = field(default_factory=list)  # empty: no fine-tuning
    finetune_seeds: int = 5
    finetune_epochs: int | None = None  # set: the old fixed-epoch protocol (no early stop)
    finetune_max_steps: int = 200
    finetune_eval_every: int = 10
    finetune_patience: int = 5
    finetune_batch_size: int = 16
    finetune_max_length: int = 256
    finetune_encoder_lr: float = 2e-5
    finetune_head_lr: float = 1e-3
    plots: bool = True

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.finetune_seeds < 1:
            raise EvaluationError("seeds must be at least 1")
        if not self.ns:
            raise EvaluationError("give at least one N")


def _n_key(n: FewShotN) -> str:
    return str(n)


def _validate_ns(eval_set: EvalSet, ns: Sequence[FewShotN]) -> None:
    """Fail before any model runs when some N cannot be drawn for some class."""
    for n in ns:
        sample_few_shot(eval_set.train, eval_set.classes, n, seed=0)


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(runs)}
    for score in SCORES:
        mean, sd = mean_sd([r[score] for r in runs])
        out[score] = {"mean": mean, "sd": sd}
    out["seconds_per_run"] = float(np.mean([r["seconds"] for r in runs]))
    return out


def _space(vectors: Vectors, labels: Sequence[str | None]) -> dict[str, float] | None:
    """Metrics over labelled notes, ignoring labels with a single note (silhouette needs 2)."""
    values = [lab or "" for lab in labels]
    counts = {v: values.count(v) for v in set(values)}
    keep = [i for i, v in enumerate(values) if v and counts[v] >= 2]
    if len({values[i] for i in keep}) < 2:
        return None
    return embedding_space_metrics(vectors[keep], [values[i] for i in keep])


def evaluate_model(
    source: ModelSource,
    eval_set: EvalSet,
    config: EvalConfig,
    out_dir: Path,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    started = time.perf_counter()
    notes = {
        n.note_id: n
        for part in (eval_set.train, eval_set.val, eval_set.analysis, eval_set.test)
        for n in part
    }
    ids = list(notes)
    vectors = cached_embeddings(
        source,
        ids,
        [notes[i].text for i in ids],
        out_dir / "cache",
        policy=config.policy,
        threads=config.threads,
    )
    row = {note_id: i for i, note_id in enumerate(ids)}
    embed_s = time.perf_counter() - started
    progress(f"{source.label}: embedded {len(ids)} notes in {embed_s:.0f} s")

    def matrix(part: Sequence[Any]) -> Vectors:
        return vectors[[row[n.note_id] for n in part]]

    x_train, x_val, x_test = matrix(eval_set.train), matrix(eval_set.val), matrix(eval_set.test)
    y_train = [n.y for n in eval_set.train]
    y_val = [n.y for n in eval_set.val]
    y_test = [n.y for n in eval_set.test]
    x_analysis = matrix(eval_set.analysis)
    space = {
        "category": _space(x_analysis, [n.category for n in eval_set.analysis]),
        "task_label": _space(x_analysis, [n.y for n in eval_set.analysis]),
    }
    pictures: list[str] = []
    if config.plots and len(eval_set.analysis) >= 3:
        points = project_2d(x_analysis)
        png = plot_projection(
            points,
            {
                "note category": [n.category for n in eval_set.analysis],
                f"task label ({eval_set.task})": [n.y for n in eval_set.analysis],
            },
            source.label,
            out_dir / f"space-{_file_slug(source.label)}.png",
        )
        pictures.append(png.name)

    results: dict[str, dict[str, Any]] = {}
    plan: list[tuple[Method, FewShotN, int]] = [
        (method, n, seed)
        for method in ("frozen_lr", "frozen_head")
        for n in config.ns
        for seed in range(config.seeds)
    ]
    if config.finetune_ns:
        if source.checkpoint is None:
            progress(f"{source.label}: no checkpoint (bundle only), fine-tuning skipped")
        else:
            plan += [
                ("finetune", n, seed)
                for n in config.finetune_ns
                for seed in range(config.finetune_seeds)
            ]
    for method, n, seed in plan:
        # "all" uses every example: seeds then only vary the classifier's initialisation.
        idx = sample_few_shot(eval_set.train, eval_set.classes, n, seed)
        ytr = [y_train[i] for i in idx]
        run_started = time.perf_counter()
        fitted: Fitted
        if method == "frozen_lr":
            fitted = logistic_probe(
                x_train[idx], ytr, x_val, y_val, x_test, eval_set.classes, seed=seed
            )
        elif method == "frozen_head":
            fitted = frozen_head(
                x_train[idx],
                ytr,
                x_val,
                y_val,
                x_test,
                eval_set.classes,
                seed=seed,
                epochs=config.head_epochs,
                lr=config.head_lr,
            )
        else:
            assert source.checkpoint is not None
            schedule = (
                StepSchedule.epochs(config.finetune_epochs, len(idx), config.finetune_batch_size)
                if config.finetune_epochs is not None
                else StepSchedule(
                    config.finetune_max_steps, config.finetune_eval_every, config.finetune_patience
                )
            )
            fitted = fine_tune(
                source.checkpoint,
                [eval_set.train[i].text for i in idx],
                ytr,
                [n_.text for n_ in eval_set.val],
                y_val,
                [n_.text for n_ in eval_set.test],
                eval_set.classes,
                seed=seed,
                schedule=schedule,
                batch_size=config.finetune_batch_size,
                max_length=config.finetune_max_length,
                encoder_lr=config.finetune_encoder_lr,
                head_lr=config.finetune_head_lr,
            )
        seconds = time.perf_counter() - run_started
        scores = classification_scores(y_test, fitted.test_pred, eval_set.classes)
        run = {
            "seed": seed,
            "train_examples": len(idx),
            "val_macro_f1": fitted.val_macro_f1,
            "chosen": fitted.chosen,
            "seconds": seconds,
            **scores,
        }
        results.setdefault(method, {}).setdefault(_n_key(n), {"runs": []})["runs"].append(run)
        progress(
            f"{source.label} {method} N={n} seed={seed}: macro-F1 {scores['macro_f1']:.3f} "
            f"({seconds:.1f} s)"
        )
    for by_n in results.values():
        for cell in by_n.values():
            cell.update(_summarise(cell["runs"]))
    return {
        "label": source.label,
        "bundle": str(source.bundle_dir),
        "checkpoint": str(source.checkpoint) if source.checkpoint else None,
        "registry_ref": source.registry_ref,
        "embed_seconds": embed_s,
        "seconds": time.perf_counter() - started,
        "space": space,
        "classification": results,
        "pictures": pictures,
    }


def _file_slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in label)


def run_report(
    sources: Sequence[ModelSource],
    eval_set: EvalSet,
    config: EvalConfig,
    out_dir: Path,
    *,
    data_description: str,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Evaluate every model, then write report.json and report.md under `out_dir`."""
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise EvaluationError(f"two models share a label: {labels}; name them LABEL=TARGET")
    if not sources:
        raise EvaluationError("give at least one model")
    _validate_ns(eval_set, list(config.ns) + list(config.finetune_ns))
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "data": data_description,
        "task": eval_set.task,
        "classes": eval_set.classes,
        "counts": eval_set.counts(),
        "dropped_classes": eval_set.dropped_classes,
        "analysis_notes": len(eval_set.analysis),
        "config": asdict(config),
        "models": {},
    }
    for source in sources:
        report["models"][source.label] = evaluate_model(source, eval_set, config, out_dir, progress)
        # Written after every model, so a long run that dies keeps what it finished.
        _write(report, out_dir, started)
    return _write(report, out_dir, started)


def _write(report: dict[str, Any], out_dir: Path, started: float) -> dict[str, Any]:
    report["seconds"] = time.perf_counter() - started
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    return report


def registry_summary(report: dict[str, Any], label: str) -> dict[str, Any]:
    """The compact per-model record stored in the registry row's eval_metrics."""
    r = report["models"][label]
    return {
        "data": report["data"],
        "task": report["task"],
        "classes": report["classes"],
        "macro_f1": {
            method: {n: cell["macro_f1"] for n, cell in by_n.items()}
            for method, by_n in r["classification"].items()
        },
        "space": r["space"],
    }
