"""The one statistics rule for every model decision: paired differences with a bootstrap
interval over items, few-shot draws and training seeds, and a verdict against a margin.

Used by the promotion guard (service/registry/promotion_guard.py), the adaptation goal and the
mixing-weight choice (training/adapt, training/evaluate/suite) and the int8 downstream check
(training/quantize/downstream.py), so that "worse", "better" and "level" mean the same thing
everywhere. numpy only: the service imports it, and so does training (a contract module).

The rule (docs/results.md, "The decision rule"): a candidate is **worse** on a task when the
upper end of the confidence interval of (candidate − reference) lies below −margin, **better**
when the lower end lies above 0, and **level** otherwise. With a calibrated interval at
confidence c, a candidate whose true difference is −margin or better is called worse with
probability at most (1 − c) / 2 (2.5 % at 95 %), per task compared.

Scores are kept per item so any two evaluations of the same items can be paired later:

* classification: `y` [n] true class indices and `pred` [K, S, n] predicted classes, for K
  training seeds and S few-shot draws (the same draws for both sides); the statistic is
  macro-F1 averaged over seeds and draws;
* per-item metrics (retrieval: nDCG@10 per query): `values` [K, n]; the statistic is the mean.

One bootstrap resample draws items (with replacement, the same for both sides), draws (the
same for both sides: they are paired) and each side's training seeds (independently: two
models' seeds are not paired) and recomputes the difference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
# Values read back from JSON: 0.825 - 0.83 is -0.0050000000000000044. An interval ending
# within this of the margin counts as at the margin, which is not beyond it.
TOLERANCE = 1e-9


class PairingError(ValueError):
    """Two score sets that cannot be paired (different items, draws or shapes)."""


class Verdict(StrEnum):
    WORSE = "worse"  # the interval lies below -margin: worse by more than the margin
    BETTER = "better"  # the interval lies above 0
    LEVEL = "level"  # neither: no evidence either way at this confidence


@dataclass(frozen=True)
class ClassificationScores:
    """One model's predictions on one task: y [n], pred [K seeds, S draws, n items]."""

    y: Ints
    pred: Ints
    n_classes: int

    def __post_init__(self) -> None:
        if self.pred.ndim != 3 or self.pred.shape[2] != self.y.shape[0] or self.y.ndim != 1:
            raise PairingError("classification scores need y [n] and pred [seeds, draws, n]")

    @property
    def items(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class ItemScores:
    """One model's per-item metric on one task: values [K seeds, n items]."""

    values: Floats

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise PairingError("item scores need values [seeds, n]")

    @property
    def items(self) -> int:
        return int(self.values.shape[1])


Scores = ClassificationScores | ItemScores


@dataclass(frozen=True)
class PairedDiff:
    """candidate − reference: the point estimate, its interval, and what it was resampled over."""

    mean: float
    ci_low: float
    ci_high: float
    confidence: float
    items: int
    draws: int
    seeds: tuple[int, int]  # (candidate, reference) training seeds

    def verdict(self, margin: float) -> Verdict:
        if self.ci_high < -margin - TOLERANCE:
            return Verdict.WORSE
        if self.ci_low > TOLERANCE:
            return Verdict.BETTER
        return Verdict.LEVEL

    @classmethod
    def from_dict(cls, record: Any) -> PairedDiff:
        """What as_dict wrote (a report's or a registry record's interval)."""
        try:
            return cls(
                float(record["mean"]),
                float(record["ci_low"]),
                float(record["ci_high"]),
                float(record.get("confidence", DEFAULT_CONFIDENCE)),
                int(record.get("items", 0)),
                int(record.get("draws", 1)),
                tuple(record.get("seeds", (1, 1))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PairingError(f"unreadable interval ({type(exc).__name__})") from None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "confidence": self.confidence,
            "items": self.items,
            "draws": self.draws,
            "seeds": list(self.seeds),
        }


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))


def _counts(rng: np.random.Generator, n_boot: int, n: int) -> Floats:
    """[B, n]: how often each of n things is drawn in each of B resamples of size n."""
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n), dtype=np.float64)
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1.0)
    return counts


def weighted_macro_f1(y: Ints, pred: Ints, weights: Floats, n_classes: int) -> Floats:
    """Macro-F1 of each row of predictions (pred [R, n]) under each item weighting (weights
    [B, n]): [B, R]. A class with no true and no predicted item scores 0 (sklearn's
    zero_division=0)."""
    total = np.zeros((weights.shape[0], pred.shape[0]), dtype=np.float64)
    for c in range(n_classes):
        truth = (y == c).astype(np.float64)  # [n]
        said = (pred == c).astype(np.float64)  # [R, n]
        tp = weights @ (said * truth).T  # [B, R]
        denom = weights @ said.T + (weights @ truth)[:, None]  # 2TP + FP + FN
        total += np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    result: Floats = total / n_classes
    return result


def _per_row(scores: Scores, weights: Floats) -> Floats:
    """The statistic of every (seed, draw) row under each item weighting: [B, K, S]."""
    if isinstance(scores, ClassificationScores):
        k, s, n = scores.pred.shape
        flat = weighted_macro_f1(scores.y, scores.pred.reshape(k * s, n), weights, scores.n_classes)
        return flat.reshape(weights.shape[0], k, s)
    k = scores.values.shape[0]
    means: Floats = (weights @ scores.values.T) / weights.sum(axis=1, keepdims=True)  # [B, K]
    return means.reshape(weights.shape[0], k, 1)


def point_value(scores: Scores) -> float:
    """The statistic on the full data: mean over seeds and draws."""
    ones = np.ones((1, scores.items), dtype=np.float64)
    return float(_per_row(scores, ones).mean())


def _check_pair(candidate: Scores, reference: Scores) -> int:
    if type(candidate) is not type(reference):
        raise PairingError("a classification result cannot be paired with a per-item metric")
    if candidate.items != reference.items:
        raise PairingError(f"different items: {candidate.items} vs {reference.items}")
    if isinstance(candidate, ClassificationScores):
        assert isinstance(reference, ClassificationScores)
        if not np.array_equal(candidate.y, reference.y):
            raise PairingError("the items' true classes differ: not the same items")
        if candidate.pred.shape[1] != reference.pred.shape[1]:
            raise PairingError(
                f"different few-shot draws: {candidate.pred.shape[1]} vs {reference.pred.shape[1]}"
            )
        return int(candidate.pred.shape[1])
    return 1


def paired_difference(
    candidate: Scores,
    reference: Scores,
    *,
    key: str,
    n_boot: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedDiff:
    """candidate − reference with a percentile bootstrap interval over items, draws and seeds.

    `key` seeds the resamples: every comparison on one task with the same key sees the very
    same item resamples, so differences of several models to one baseline are comparable.
    """
    draws = _check_pair(candidate, reference)
    if not 0.5 < confidence < 1:
        raise ValueError("confidence must be in (0.5, 1)")
    rng = _rng(key)
    item_w = _counts(rng, n_boot, candidate.items)  # [B, n]
    draw_w = _counts(rng, n_boot, draws)  # [B, S], shared: draws are paired
    sides = []
    for scores in (candidate, reference):
        rows = _per_row(scores, item_w)  # [B, K, S]
        seed_w = _counts(rng, n_boot, rows.shape[1])  # [B, K], per side
        total = np.einsum("bk,bs,bks->b", seed_w, draw_w, rows)
        sides.append(total / (rows.shape[1] * rows.shape[2]))
    diffs = sides[0] - sides[1]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(diffs, [tail, 100 - tail])
    seeds = (_seeds(candidate), _seeds(reference))
    mean = point_value(candidate) - point_value(reference)
    return PairedDiff(mean, float(low), float(high), confidence, candidate.items, draws, seeds)


def _seeds(scores: Scores) -> int:
    return int(
        scores.pred.shape[0] if isinstance(scores, ClassificationScores) else scores.values.shape[0]
    )


def stack_seeds(runs: list[Scores]) -> Scores:
    """One score set per training seed (same items and draws) -> one with K = len(runs)."""
    if not runs:
        raise PairingError("no runs to stack")
    first = runs[0]
    for other in runs[1:]:
        _check_pair(other, first)
    if isinstance(first, ClassificationScores):
        preds = [r.pred for r in runs if isinstance(r, ClassificationScores)]
        return ClassificationScores(first.y, np.concatenate(preds, axis=0), first.n_classes)
    values = [r.values for r in runs if isinstance(r, ItemScores)]
    return ItemScores(np.concatenate(values, axis=0))


# --- the stored form (JSON: a registered version's eval_metrics, a report) -----------------


def scores_to_json(scores: Scores, item_ids: list[str]) -> dict[str, Any]:
    """A compact, JSON-safe record of one model's item scores (K = 1 for a stored version)."""
    if len(item_ids) != scores.items:
        raise PairingError("one id per item needed")
    if isinstance(scores, ClassificationScores):
        return {
            "kind": "classification",
            "ids": item_ids,
            "y": scores.y.tolist(),
            "n_classes": scores.n_classes,
            "pred": scores.pred.tolist(),
        }
    return {
        "kind": "items",
        "ids": item_ids,
        "values": np.round(scores.values, 6).tolist(),
    }


def scores_from_json(record: Any) -> tuple[Scores, list[str]]:
    """Read back what scores_to_json wrote; PairingError when it is not such a record."""
    try:
        ids = [str(i) for i in record["ids"]]
        if record["kind"] == "classification":
            scores: Scores = ClassificationScores(
                np.asarray(record["y"], dtype=np.int64),
                np.asarray(record["pred"], dtype=np.int64),
                int(record["n_classes"]),
            )
        elif record["kind"] == "items":
            scores = ItemScores(np.asarray(record["values"], dtype=np.float64))
        else:
            raise PairingError(f"unknown score kind {record['kind']!r}")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PairingError):
            raise
        raise PairingError(f"unreadable item scores ({type(exc).__name__})") from None
    if len(ids) != scores.items:
        raise PairingError("unreadable item scores (ids and scores differ in length)")
    return scores, ids


def pair_stored(
    candidate: Any,
    reference: Any,
    *,
    key: str,
    n_boot: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedDiff:
    """The paired difference of two stored item-score records (same items, same order)."""
    cand, cand_ids = scores_from_json(candidate)
    ref, ref_ids = scores_from_json(reference)
    if cand_ids != ref_ids:
        raise PairingError("the two results were scored on different items")
    return paired_difference(cand, ref, key=key, n_boot=n_boot, confidence=confidence)


def refusal_probability(true_diff: float, margin: float, se: float, z: float = 1.96) -> float:
    """P(the rule calls a candidate worse) for a true difference, under a normal interval with
    standard error `se` (z = 1.96 at 95 %): the rule's error rates as a function of the truth."""
    from math import erf, sqrt

    threshold = (-margin - true_diff) / se - z  # worse iff estimate + z·se < -margin
    return 0.5 * (1 + erf(threshold / sqrt(2)))
