"""`run_suite`: every model on every task of a suite, paired with a baseline model; writes
report.json, report.md and the plots, and stores the results on registered versions."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.paired_intervals import (
    ItemScores,
    PairingError,
    paired_difference,
    point_value,
    scores_from_json,
    scores_to_json,
    stack_seeds,
)
from training.evaluate.data import EvaluationError
from training.evaluate.models import ModelSource, RegistryFactory, resolve_model
from training.evaluate.plots import plot_projection, project_2d
from training.evaluate.suite import classification_eval, retrieval_eval
from training.evaluate.suite.catalogue import LoadedTask, file_sha256, load_task, suite_fingerprint
from training.evaluate.suite.config import SuiteConfig, load_suite
from training.evaluate.suite.embeddings import ModelEmbedder
from training.evaluate.suite.markdown import render_markdown
from training.evaluate.suite.plots import plot_diffs
from training.evaluate.suite.summary import (
    primary_diff,
    primary_metric,
    primary_value,
    store_in_registry,
)
from training.evaluate.suite.tasks import ClassificationTask, RetrievalTask, Split

log = logging.getLogger(__name__)


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class RunConfig:
    """How to run a suite on this machine (nothing here changes the results' fingerprint)."""

    data_root: Path | None = None  # relative task paths resolve here (else: the suite's folder)
    threads: int = 2
    baseline: str | None = None  # a model label; default the first model
    cache_dir: Path | None = None  # embedding cache; default OUT/cache
    registry: RegistryFactory | None = None  # resolves NAME@VERSION and stores results
    export_max_tokens: int | None = None  # window when exporting checkpoints to bundles
    plots: bool = True
    progress: Callable[[str], None] = _quiet
    # label -> member labels: one model trained with several seeds, compared with the
    # baseline as one candidate (the interval resamples its seeds too)
    groups: dict[str, list[str]] | None = None


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in text)


def _resolve(
    models: Sequence[ModelSource | str], out_dir: Path, config: RunConfig
) -> list[ModelSource]:
    sources = [
        m
        if isinstance(m, ModelSource)
        else resolve_model(
            m, out_dir, registry=config.registry, max_tokens=config.export_max_tokens
        )
        for m in models
    ]
    if not sources:
        raise EvaluationError("give at least one model")
    labels = [s.label for s in sources]
    if len(set(labels)) != len(labels):
        raise EvaluationError(f"two models share a label: {labels}; name them LABEL=TARGET")
    if config.baseline is not None and config.baseline not in labels:
        raise EvaluationError(f"--baseline {config.baseline!r} is not one of the models {labels}")
    return sources


def _check_draws(suite: SuiteConfig, loaded: dict[str, LoadedTask]) -> None:
    """Fail before any model runs when some N cannot be drawn for some class."""
    for spec in suite.tasks:
        task = loaded[spec.name].task
        if isinstance(task, ClassificationTask):
            plan = classification_eval.FewShotPlan(task)
            for n in suite.task_ns(spec) + suite.finetune_ns(spec.name):
                plan.draw(n, 0)


def load_tasks(
    suite: SuiteConfig, data_root: Path | None, progress: Callable[[str], None] = _quiet
) -> dict[str, LoadedTask]:
    loaded = {}
    for spec in suite.tasks:
        loaded[spec.name] = load_task(spec, suite, data_root)
        task = loaded[spec.name].task
        if isinstance(task, ClassificationTask):
            progress(
                f"{task.name}: {len(task.classes)} classes, train {len(task.train)} / val "
                f"{len(task.val)} / test {len(task.test)}; dropped {len(task.dropped_classes)}"
            )
        else:
            progress(
                f"{task.name}: corpus {len(task.doc_ids)}, queries val {len(task.val)} / test "
                f"{len(task.test)}"
            )
    _check_draws(suite, loaded)
    return loaded


def run_suite(
    models: Sequence[ModelSource | str],
    suite: SuiteConfig | str,
    config: RunConfig,
    out_dir: Path,
    split: Split = "test",
) -> dict[str, Any]:
    """Evaluate `models` (ModelSource or `[LABEL=]bundle|checkpoint|base|NAME@VERSION`) on
    `suite` (a SuiteConfig, a YAML path or a named suite) and return the report dict.

    split="val" scores the validation data only (the test split is never embedded): use it to
    choose hyper-parameters such as a weight-interpolation coefficient.
    """
    if split not in ("test", "val"):
        raise EvaluationError(f"split must be test or val, not {split!r}")
    data_root = config.data_root
    if isinstance(suite, str):
        suite, suite_dir = load_suite(suite)
        data_root = data_root or suite_dir
    progress = config.progress
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    loaded = load_tasks(suite, data_root, progress)
    sources = _resolve(models, out_dir, config)
    baseline = config.baseline or sources[0].label
    groups = _check_groups(config.groups or {}, [s.label for s in sources], baseline)
    settings = suite.settings
    embedders = {
        s.label: ModelEmbedder(
            s,
            config.cache_dir or out_dir / "cache",
            policy=settings.long_note,
            threads=config.threads,
            runtime_setting=settings.runtime,
            cpu_precision=settings.cpu_precision,
        )
        for s in sources
    }
    report: dict[str, Any] = {
        "suite": {
            "name": suite.name,
            "description": suite.description,
            "fingerprint": suite_fingerprint(suite, loaded),
            "definition": suite.model_dump(mode="json"),
            "data_files": {
                name: {p.name: file_sha256(p) for p in item.files} for name, item in loaded.items()
            },
        },
        "split": split,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": baseline,
        "threads": config.threads,
        "models": {
            s.label: {
                "bundle": str(s.bundle_dir),
                "checkpoint": str(s.checkpoint) if s.checkpoint else None,
                "registry_ref": s.registry_ref,
                "runtime": embedders[s.label].runtime_label,
                "providers": [],
            }
            for s in sources
        },
        "tasks": {},
    }
    for spec in suite.tasks:
        task = loaded[spec.name].task
        t0 = time.perf_counter()
        if isinstance(task, ClassificationTask):
            entry = _classification(
                task, suite, suite.task_ns(spec), embedders, baseline, split, out_dir, config
            )
        else:
            entry = _retrieval(task, embedders, baseline, split, suite, progress)
        entry["seconds"] = time.perf_counter() - t0
        report["tasks"][task.name] = entry
        for label, embedder in embedders.items():
            report["models"][label]["providers"] = list(embedder.providers)
        progress(f"{task.name}: done in {entry['seconds']:.0f} s")
        _write(report, out_dir, started, plots=False)  # a run that dies keeps what it finished
    report["groups"] = _group_diffs(report, groups, baseline, suite)
    report["summary"] = _summary_table(report)
    _write(report, out_dir, started, plots=config.plots)
    if config.registry is not None:
        report["stored"] = store_in_registry(report, config.registry, progress)
        _write(report, out_dir, started, plots=False)
    return report


def _classification(
    task: ClassificationTask,
    suite: SuiteConfig,
    ns: list[Any],
    embedders: dict[str, ModelEmbedder],
    baseline: str,
    split: Split,
    out_dir: Path,
    config: RunConfig,
) -> dict[str, Any]:
    plan = classification_eval.FewShotPlan(task)
    settings = suite.settings
    outcomes = {}
    for label, embedder in embedders.items():

        def picture(x: npt.NDArray[np.float32], y: list[str], label: str = label) -> str | None:
            if not (settings.tsne and config.plots) or len(y) < 3:
                return None
            png = out_dir / f"space-{_slug(task.name)}-{_slug(label)}.png"
            plot_projection(project_2d(x), {"class": y}, f"{task.name}: {label}", png)
            return png.name

        outcomes[label] = classification_eval.evaluate_model(
            task,
            plan,
            embedder,
            settings,
            ns,
            split,
            finetune=settings.finetune,
            finetune_ns=suite.finetune_ns(task.name),
            picture=picture,
            progress=config.progress,
        )
    results = {label: o.result for label, o in outcomes.items()}
    classification_eval.check_paired_draws(task.name, results)
    primary = str(classification_eval.primary_n(ns))
    ids = [e.item_id for e in task.split(split)]
    items = {
        label: scores_to_json(
            classification_eval.item_scores(task, split, o.predictions["frozen_lr"][primary]), ids
        )
        for label, o in outcomes.items()
    }
    return {
        "items": items,
        "name": task.name,
        "kind": "classification",
        "protocol": task.protocol,
        "classes": task.classes,
        "counts": task.counts(),
        "dropped_classes": task.dropped_classes,
        "ns": [str(n) for n in ns],
        "seeds": settings.seeds,
        "primary_metric": f"macro_f1@{classification_eval.primary_n(ns)}",
        "models": results,
        "diffs": classification_eval.paired_diffs(task, split, outcomes, baseline, settings),
    }


def _retrieval(
    task: RetrievalTask,
    embedders: dict[str, ModelEmbedder],
    baseline: str,
    split: Split,
    suite: SuiteConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    outcomes = {
        label: retrieval_eval.evaluate_model(task, embedder, split, progress)
        for label, embedder in embedders.items()
    }
    ids = [q.query_id for q in task.split(split)]
    items = {
        label: scores_to_json(ItemScores(o.per_query[task.name][task.primary][None]), ids)
        for label, o in outcomes.items()
    }
    return {
        "items": items,
        "name": task.name,
        "kind": "retrieval",
        "protocol": task.protocol,
        "corpus": len(task.doc_ids),
        "queries": {"val": len(task.val), "test": len(task.test)},
        "metrics": list(task.metrics),
        "primary_metric": task.primary,
        "secondary": [
            {
                "name": s.name,
                "protocol": s.protocol,
                "corpus": len(s.doc_ids),
                "queries": {"val": len(s.val), "test": len(s.test)},
                "metrics": list(s.metrics),
            }
            for s in task.secondary
        ],
        "models": {label: o.result for label, o in outcomes.items()},
        "diffs": retrieval_eval.paired_diffs(task, outcomes, baseline, suite.settings),
    }


def _check_groups(
    groups: dict[str, list[str]], labels: list[str], baseline: str
) -> dict[str, list[str]]:
    for name, members in groups.items():
        if name in labels:
            raise EvaluationError(f"group {name!r} has the name of a model")
        unknown = [m for m in members if m not in labels]
        if unknown or not members:
            raise EvaluationError(f"group {name!r} names no model or unknown ones: {unknown}")
        if baseline in members:
            raise EvaluationError(f"group {name!r} holds the baseline {baseline!r}")
    return groups


def _group_diffs(
    report: dict[str, Any], groups: dict[str, list[str]], baseline: str, suite: SuiteConfig
) -> dict[str, Any]:
    """group -> task -> the members' mean primary value and the paired difference of all
    members (their training seeds resampled) to the baseline."""
    out: dict[str, Any] = {}
    settings = suite.settings
    for name, members in groups.items():
        out[name] = {"members": members, "tasks": {}}
        for task_name, task in report["tasks"].items():
            try:
                runs = [scores_from_json(task["items"][m])[0] for m in members]
                ref = scores_from_json(task["items"][baseline])[0]
                stacked = stack_seeds(runs)
            except (KeyError, PairingError) as exc:
                raise EvaluationError(f"group {name}, task {task_name}: {exc}") from None
            diff = paired_difference(
                stacked,
                ref,
                key=task_name,
                n_boot=settings.bootstrap,
                confidence=settings.confidence,
            )
            out[name]["tasks"][task_name] = {
                "metric": primary_metric(task),
                "value": point_value(stacked),
                "member_values": [primary_value(task, m) for m in members],
                "diff": diff.as_dict(),
            }
    return out


def _summary_table(report: dict[str, Any]) -> dict[str, Any]:
    """task -> label -> {metric, value, diff}: the numbers of the report's summary table."""
    out: dict[str, Any] = {}
    for name, task in report["tasks"].items():
        out[name] = {
            label: {
                "metric": primary_metric(task),
                "value": primary_value(task, label),
                "diff": primary_diff(task, label),
            }
            for label in task["models"]
        }
    return out


def _write(report: dict[str, Any], out_dir: Path, started: float, *, plots: bool) -> None:
    report["seconds"] = time.perf_counter() - started
    if plots:
        report["plots"] = plot_diffs(report, out_dir)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
