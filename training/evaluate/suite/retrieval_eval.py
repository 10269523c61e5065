"""One retrieval task for every model: exact cosine search over the corpus, per-query
metrics, and paired differences to the baseline (bootstrap over queries)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from service.paired_intervals import ItemScores, paired_difference
from training.evaluate.suite.config import SuiteSettings
from training.evaluate.suite.embeddings import ModelEmbedder
from training.evaluate.suite.retrieval import evaluate_ranking
from training.evaluate.suite.tasks import RetrievalTask, Split

Floats = npt.NDArray[np.float64]


@dataclass
class RetrievalOutcome:
    result: dict[str, Any]
    per_query: dict[str, dict[str, Floats]]  # direction (task name) -> metric -> [queries]


def _direction(task: RetrievalTask, embedder: ModelEmbedder, split: Split) -> dict[str, Floats]:
    queries = task.split(split)
    docs = embedder.embed(task.doc_texts)
    qs = embedder.embed([q.text for q in queries])
    return evaluate_ranking(qs, docs, queries, task.doc_ids, task.metrics, task.doc_groups)


def evaluate_model(
    task: RetrievalTask,
    embedder: ModelEmbedder,
    split: Split,
    progress: Callable[[str], None],
) -> RetrievalOutcome:
    started = time.perf_counter()
    embed_before = embedder.seconds
    per_query: dict[str, dict[str, Floats]] = {}
    result: dict[str, Any] = {"secondary": {}}
    for direction in [task, *task.secondary]:
        values = _direction(direction, embedder, split)
        per_query[direction.name] = values
        means = {m: float(v.mean()) for m, v in values.items()}
        if direction is task:
            result["metrics"] = means
        else:
            result["secondary"][direction.name] = {"metrics": means}
        progress(
            f"{direction.name} {embedder.source.label}: "
            + ", ".join(f"{m} {v:.3f}" for m, v in means.items())
        )
    result["seconds"] = {
        "embedding": embedder.seconds - embed_before,
        "total": time.perf_counter() - started,
        "texts_embedded": embedder.embedded,
    }
    return RetrievalOutcome(result, per_query)


def paired_diffs(
    task: RetrievalTask,
    outcomes: dict[str, RetrievalOutcome],
    baseline: str,
    settings: SuiteSettings,
) -> dict[str, Any]:
    """label -> direction -> metric -> the paired difference (bootstrap over queries)."""
    base = outcomes[baseline].per_query
    diffs: dict[str, Any] = {}
    for label, outcome in outcomes.items():
        if label == baseline:
            continue
        diffs[label] = {
            direction: {
                metric: paired_difference(
                    ItemScores(values[None]),
                    ItemScores(base[direction][metric][None]),
                    key=direction,  # every metric of a direction: the same resamples
                    n_boot=settings.bootstrap,
                    confidence=settings.confidence,
                ).as_dict()
                for metric, values in by_metric.items()
            }
            for direction, by_metric in outcome.per_query.items()
        }
    return diffs
