"""Paired differences between two models on the same test items, with a percentile bootstrap
confidence interval: resample items (test notes or queries), recompute both, subtract."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.evaluate.data import EvaluationError

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PairedDiff:
    mean: float  # candidate minus baseline, on the full test set
    ci_low: float
    ci_high: float
    seed_sd: float | None = None  # sd over seeds of the per-seed differences
    per_seed: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "seed_sd": self.seed_sd,
            "per_seed": list(self.per_seed),
        }


def resample_weights(n_items: int, n_boot: int, key: str) -> Floats:
    """[B, n] counts: how often each item is drawn in each resample (seeded by `key`, so
    every model compared on a task sees the very same resamples)."""
    if n_items < 1:
        raise EvaluationError("a bootstrap needs at least one test item")
    seed = int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_items, size=(n_boot, n_items))
    weights = np.zeros((n_boot, n_items), dtype=np.float64)
    np.add.at(weights, (np.repeat(np.arange(n_boot), n_items), draws.ravel()), 1.0)
    return weights


def weighted_macro_f1(y: Ints, pred: Ints, weights: Floats, n_classes: int) -> Floats:
    """Macro-F1 of each seed's predictions (pred [S, n]) under each resample (weights [B, n]):
    [B, S]. A class with no true and no predicted item scores 0, as sklearn's zero_division=0."""
    total = np.zeros((weights.shape[0], pred.shape[0]), dtype=np.float64)
    for c in range(n_classes):
        truth = (y == c).astype(np.float64)  # [n]
        said = (pred == c).astype(np.float64)  # [S, n]
        tp = weights @ (said * truth).T  # [B, S]
        predicted = weights @ said.T
        actual = (weights @ truth)[:, None]
        denom = predicted + actual  # 2TP + FP + FN
        total += np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    result: Floats = total / n_classes
    return result


def _interval(diffs: Floats, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    return float(low), float(high)


def paired_classification_diff(
    y: Ints,
    baseline: Ints,
    candidate: Ints,
    n_classes: int,
    *,
    n_boot: int,
    key: str,
    confidence: float = 0.95,
) -> PairedDiff:
    """Macro-F1 (averaged over seeds) of candidate minus baseline: predictions [S, n] per
    model, seed s of both drawn from the same few-shot examples."""
    if baseline.shape != candidate.shape or baseline.shape[1] != len(y):
        raise EvaluationError("paired predictions must cover the same seeds and test items")
    ones = np.ones((1, len(y)))
    per_seed = (
        weighted_macro_f1(y, candidate, ones, n_classes)[0]
        - weighted_macro_f1(y, baseline, ones, n_classes)[0]
    )
    weights = resample_weights(len(y), n_boot, key)
    diffs = weighted_macro_f1(y, candidate, weights, n_classes).mean(axis=1) - weighted_macro_f1(
        y, baseline, weights, n_classes
    ).mean(axis=1)
    low, high = _interval(diffs, confidence)
    sd = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return PairedDiff(float(per_seed.mean()), low, high, sd, tuple(float(d) for d in per_seed))


def paired_mean_diff(
    baseline: Floats,
    candidate: Floats,
    *,
    n_boot: int,
    key: str,
    confidence: float = 0.95,
) -> PairedDiff:
    """Mean of a per-item metric (e.g. per-query nDCG@10), candidate minus baseline."""
    if baseline.shape != candidate.shape or baseline.ndim != 1:
        raise EvaluationError("paired values must cover the same items")
    delta = candidate - baseline
    weights = resample_weights(len(delta), n_boot, key)
    diffs = weights @ delta / len(delta)
    low, high = _interval(diffs, confidence)
    return PairedDiff(float(delta.mean()), low, high)
