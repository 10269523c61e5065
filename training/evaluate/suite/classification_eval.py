"""One classification task for every model: the frozen LR probe at each N × seed on the same
few-shot draws, embedding-space metrics, optional fine-tuning, and paired differences."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.paired_intervals import ClassificationScores, paired_difference, weighted_macro_f1
from training.evaluate.classifiers import Fitted, StepSchedule, cv_logistic_probe, fine_tune
from training.evaluate.data import EvaluationError, FewShotN, sample_few_shot
from training.evaluate.metrics import classification_scores, embedding_space_metrics, mean_sd
from training.evaluate.suite.config import FinetuneSettings, SuiteSettings
from training.evaluate.suite.embeddings import ModelEmbedder
from training.evaluate.suite.tasks import ClassificationTask, Example, Split

Ints = npt.NDArray[np.int64]
SCORES = ("macro_f1", "accuracy", "weighted_f1")


def primary_n(ns: Sequence[FewShotN]) -> FewShotN:
    """The N of the primary metric: 16 when evaluated, else the smallest N given."""
    if 16 in ns:
        return 16
    finite = sorted(n for n in ns if n != "all")
    return finite[0] if finite else "all"


@dataclass
class FewShotPlan:
    """The few-shot draws of one task: they depend only on the task, N and the seed, so every
    model is fitted on exactly the same examples."""

    task: ClassificationTask
    _draws: dict[tuple[FewShotN, int], list[int]] = field(default_factory=dict)

    def draw(self, n: FewShotN, seed: int) -> list[int]:
        key = (n, seed)
        if key not in self._draws:
            self._draws[key] = sample_few_shot(self.task.train, self.task.classes, n, seed)
        return self._draws[key]

    def digest(self, n: FewShotN, seed: int) -> str:
        ids = sorted(self.task.train[i].item_id for i in self.draw(n, seed))
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


@dataclass
class ModelOutcome:
    result: dict[str, Any]
    predictions: dict[str, dict[str, Ints]]  # method -> N -> [seeds, scored items]


def _run_record(
    seed: int, digest: str, fitted: Fitted, scores: dict[str, Any], seconds: float, size: int
) -> dict[str, Any]:
    return {
        "seed": seed,
        "draw": digest,
        "train_examples": size,
        # the score the choice was made on: cross-validation within the draw (probe),
        # validation macro-F1 (fine-tuning's early stopping)
        "selection_macro_f1": fitted.val_macro_f1,
        "chosen": fitted.chosen,
        "seconds": seconds,
        **{k: scores[k] for k in SCORES},
        "per_class_f1": {c: v["f1-score"] for c, v in scores["per_class"].items()},
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"seeds": len(runs), "runs": runs}
    for score in SCORES:
        mean, sd = mean_sd([r[score] for r in runs])
        out[score] = {"mean": mean, "sd": sd}
    out["seconds_per_run"] = float(np.mean([r["seconds"] for r in runs]))
    return out


def _space(x: npt.NDArray[np.float32], labels: list[str]) -> dict[str, float] | None:
    try:
        return embedding_space_metrics(x, labels)
    except EvaluationError:
        return None  # too few items per class for the geometry metrics


def evaluate_model(
    task: ClassificationTask,
    plan: FewShotPlan,
    embedder: ModelEmbedder,
    settings: SuiteSettings,
    ns: Sequence[FewShotN],
    split: Split,
    *,
    finetune: FinetuneSettings | None,
    finetune_ns: Sequence[FewShotN],
    picture: Callable[[npt.NDArray[np.float32], list[str]], str | None],
    progress: Callable[[str], None],
) -> ModelOutcome:
    label = embedder.source.label
    scored: list[Example] = task.split(split)
    started = time.perf_counter()
    embed_before = embedder.seconds
    x_pool = embedder.embed([e.text for e in task.train])
    x_scored = embedder.embed([e.text for e in scored])
    embed_s = embedder.seconds - embed_before
    y_pool = [e.y for e in task.train]
    y_scored = [e.y for e in scored]
    index = {c: i for i, c in enumerate(task.classes)}
    result: dict[str, Any] = {"frozen_lr": {}}
    predictions: dict[str, dict[str, Ints]] = {"frozen_lr": {}}
    memo: dict[tuple[int, ...], tuple[Fitted, float]] = {}
    for n in ns:
        runs, preds = [], []
        for seed in range(settings.seeds):
            idx = plan.draw(n, seed)
            key = tuple(idx)
            if key not in memo:  # N=all draws every example: one fit serves every seed
                t0 = time.perf_counter()
                y_draw = [y_pool[i] for i in idx]
                # lbfgs is deterministic: the seed varies the draw, not the fit. C is chosen
                # by cross-validation inside the draw, never on the items scored.
                fitted = cv_logistic_probe(x_pool[idx], y_draw, x_scored, task.classes)
                memo[key] = (fitted, time.perf_counter() - t0)
            fitted, seconds = memo[key]
            scores = classification_scores(y_scored, fitted.test_pred, task.classes)
            runs.append(_run_record(seed, plan.digest(n, seed), fitted, scores, seconds, len(idx)))
            preds.append([index[p] for p in fitted.test_pred])
        result["frozen_lr"][str(n)] = _summary(runs)
        predictions["frozen_lr"][str(n)] = np.asarray(preds, dtype=np.int64)
        cell = result["frozen_lr"][str(n)]["macro_f1"]
        progress(f"{task.name} {label} LR N={n}: macro-F1 {cell['mean']:.3f} ± {cell['sd']:.3f}")
    result["space"] = _space(x_scored, y_scored)
    pictures = [p for p in [picture(x_scored, y_scored)] if p]
    result["pictures"] = pictures
    if finetune is not None and finetune_ns:
        if embedder.source.checkpoint is None:
            result["finetune_skipped"] = "no checkpoint (a bundle alone cannot be fine-tuned)"
            progress(f"{task.name} {label}: no checkpoint, fine-tuning skipped")
        else:
            ft_result, ft_preds = _fine_tune(
                task,
                plan,
                embedder.source.checkpoint,
                finetune,
                finetune_ns,
                split,
                progress,
                label,
            )
            result["finetune"], predictions["finetune"] = ft_result, ft_preds
    result["seconds"] = {
        "embedding": embed_s,
        "total": time.perf_counter() - started,
        "texts_embedded": embedder.embedded,
    }
    return ModelOutcome(result, predictions)


def _fine_tune(
    task: ClassificationTask,
    plan: FewShotPlan,
    checkpoint: Path,
    ft: FinetuneSettings,
    ns: Sequence[FewShotN],
    split: Split,
    progress: Callable[[str], None],
    label: str,
) -> tuple[dict[str, Any], dict[str, Ints]]:
    scored = task.split(split)
    index = {c: i for i, c in enumerate(task.classes)}
    out: dict[str, Any] = {}
    preds_by_n: dict[str, Ints] = {}
    schedule = StepSchedule(ft.max_steps, ft.eval_every, ft.patience)
    for n in ns:
        runs, preds = [], []
        for seed in range(ft.seeds):
            idx = plan.draw(n, seed)
            t0 = time.perf_counter()
            fitted = fine_tune(
                checkpoint,
                [task.train[i].text for i in idx],
                [task.train[i].y for i in idx],
                [e.text for e in task.val],
                [e.y for e in task.val],
                [e.text for e in scored],
                task.classes,
                seed=seed,
                schedule=schedule,
                batch_size=ft.batch_size,
                max_length=ft.max_length,
                encoder_lr=ft.encoder_lr,
                head_lr=ft.head_lr,
            )
            seconds = time.perf_counter() - t0
            scores = classification_scores([e.y for e in scored], fitted.test_pred, task.classes)
            runs.append(_run_record(seed, plan.digest(n, seed), fitted, scores, seconds, len(idx)))
            preds.append([index[p] for p in fitted.test_pred])
            progress(
                f"{task.name} {label} fine-tune N={n} seed={seed}: macro-F1 "
                f"{scores['macro_f1']:.3f}, step {fitted.chosen['step']} "
                f"({fitted.chosen['stopped']}), {seconds:.0f} s"
            )
        cell = _summary(runs)
        cell["stopped_early"] = sum(r["chosen"]["stopped"] == "early" for r in runs)
        cell["hit_cap"] = sum(r["chosen"]["stopped"] == "cap" for r in runs)
        out[str(n)] = cell
        preds_by_n[str(n)] = np.asarray(preds, dtype=np.int64)
    return out, preds_by_n


def check_paired_draws(task: str, results: dict[str, dict[str, Any]]) -> None:
    """Every model must have been fitted on the same examples for each (method, N, seed)."""
    seen: dict[tuple[str, str, int], tuple[str, str]] = {}
    for label, result in results.items():
        for method in ("frozen_lr", "finetune"):
            for n, cell in result.get(method, {}).items():
                for run in cell["runs"]:
                    key = (method, n, run["seed"])
                    first = seen.setdefault(key, (label, run["draw"]))
                    if first[1] != run["draw"]:
                        raise EvaluationError(
                            f"task {task}: {method} N={n} seed {run['seed']} drew different "
                            f"examples for {first[0]} and {label}; paired differences need "
                            "the same draws"
                        )


def item_scores(task: ClassificationTask, split: Split, preds: Ints) -> ClassificationScores:
    """One model's predictions [draws, items] on the scored split, as the decision rule takes
    them (one training seed)."""
    index = {c: i for i, c in enumerate(task.classes)}
    y = np.asarray([index[e.y] for e in task.split(split)], dtype=np.int64)
    return ClassificationScores(y, preds[None], len(task.classes))


def paired_diffs(
    task: ClassificationTask,
    split: Split,
    outcomes: dict[str, ModelOutcome],
    baseline: str,
    settings: SuiteSettings,
) -> dict[str, Any]:
    """label -> method -> N -> the paired difference to the baseline (bootstrap over items and
    few-shot draws, service/paired_intervals.py), with the per-draw differences beside it."""
    base = outcomes[baseline].predictions
    diffs: dict[str, Any] = {}
    for label, outcome in outcomes.items():
        if label == baseline:
            continue
        per_method: dict[str, Any] = {}
        for method, by_n in outcome.predictions.items():
            for n, preds in by_n.items():
                if n not in base.get(method, {}):
                    continue  # e.g. the baseline has no checkpoint to fine-tune
                cand = item_scores(task, split, preds)
                ref = item_scores(task, split, base[method][n])
                diff = paired_difference(
                    cand,
                    ref,
                    key=task.name,  # the same item resamples for every method and N
                    n_boot=settings.bootstrap,
                    confidence=settings.confidence,
                )
                ones = np.ones((1, cand.items))
                per_draw = (
                    weighted_macro_f1(cand.y, cand.pred[0], ones, cand.n_classes)[0]
                    - weighted_macro_f1(ref.y, ref.pred[0], ones, ref.n_classes)[0]
                )
                per_method.setdefault(method, {})[n] = {
                    **diff.as_dict(),
                    "per_draw": [float(d) for d in per_draw],
                    "draw_sd": float(np.std(per_draw, ddof=1)) if len(per_draw) > 1 else 0.0,
                }
        diffs[label] = per_method
    return diffs
