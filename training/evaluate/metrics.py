"""Classification scores and embedding-space geometry (cluster quality, alignment/uniformity)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import (
    accuracy_score,
    calinski_harabasz_score,
    classification_report,
    davies_bouldin_score,
    f1_score,
    silhouette_score,
)

from training.evaluate.data import EvaluationError

Vectors = npt.NDArray[np.float32]


# The scores a classification report summarises over seeds, primary first.
SCORES = ("macro_f1", "accuracy", "weighted_f1")


def classification_scores(
    y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """macro-F1 (primary), accuracy, weighted F1 and the per-class report over `classes`."""
    labels = list(classes)
    report = classification_report(y_true, y_pred, labels=labels, output_dict=True, zero_division=0)
    return {
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": {
            c: {k: float(report[c][k]) for k in ("precision", "recall", "f1-score", "support")}
            for c in labels
        },
    }


def _unit(x: Vectors) -> Vectors:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: Vectors = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


def embedding_space_metrics(
    vectors: Vectors, labels: Sequence[str], *, max_pairs: int = 200_000, seed: int = 0
) -> dict[str, float]:
    """Separability of `labels` in the embedding space.

    silhouette (cosine; higher = better separated), Davies–Bouldin (lower = better),
    Calinski–Harabasz (higher = better), within- vs between-class mean cosine, and
    Wang & Isola alignment (mean squared distance of same-class pairs, lower = tighter
    classes) and uniformity (log E exp(-2 ||x - y||²) over all pairs, lower = more uniform).
    """
    y = np.asarray(labels)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise EvaluationError("embedding-space metrics need at least two labels")
    if len(y) != len(vectors):
        raise EvaluationError(f"{len(vectors)} vectors but {len(y)} labels")
    if len(y) <= len(classes):
        raise EvaluationError("embedding-space metrics need more notes than labels")
    x = _unit(vectors)
    sim = x @ x.T  # [N, N] cosine
    same = y[:, None] == y[None, :]
    off_diag = ~np.eye(len(y), dtype=bool)
    within = sim[same & off_diag]
    between = sim[~same]
    sq_dist = np.clip(2.0 - 2.0 * sim, 0.0, None)  # unit vectors: ||x - y||² = 2 - 2 cos
    pairs = np.argwhere(np.triu(off_diag))
    if len(pairs) > max_pairs:
        pairs = pairs[np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False)]
    all_sq = sq_dist[pairs[:, 0], pairs[:, 1]]
    pos = same[pairs[:, 0], pairs[:, 1]]
    return {
        "silhouette_cosine": float(silhouette_score(x, y, metric="cosine")),
        "davies_bouldin": float(davies_bouldin_score(x, y)),
        "calinski_harabasz": float(calinski_harabasz_score(x, y)),
        "within_class_cosine": float(within.mean()) if within.size else float("nan"),
        "between_class_cosine": float(between.mean()),
        "cosine_gap": float(within.mean() - between.mean()) if within.size else float("nan"),
        "alignment": float(all_sq[pos].mean()) if pos.any() else float("nan"),
        "uniformity": float(np.log(np.exp(-2.0 * all_sq).mean())),
        "notes": float(len(y)),
        "labels": float(len(classes)),
        "smallest_label": float(counts.min()),
    }


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
