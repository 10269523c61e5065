"""The decision rule on constructed data: point values, pairing, error rates, the stored form."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from service.paired_intervals import (
    ClassificationScores,
    ItemScores,
    PairingError,
    Verdict,
    pair_stored,
    paired_difference,
    point_value,
    refusal_probability,
    scores_from_json,
    scores_to_json,
    stack_seeds,
)


def _classification(rng: np.random.Generator, y: np.ndarray, accuracy: float, k: int, s: int):
    """Predictions right with probability `accuracy`, else a random other class."""
    n_classes = int(y.max()) + 1
    right = rng.random((k, s, len(y))) < accuracy
    wrong = (y + rng.integers(1, n_classes, size=(k, s, len(y)))) % n_classes
    return ClassificationScores(y, np.where(right, y, wrong).astype(np.int64), n_classes)


def test_point_value_is_macro_f1_averaged_over_seeds_and_draws() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=120)
    scores = _classification(rng, y, 0.7, k=2, s=3)
    expected = np.mean(
        [
            f1_score(y, scores.pred[k, s], labels=range(4), average="macro", zero_division=0)
            for k in range(2)
            for s in range(3)
        ]
    )
    assert point_value(scores) == pytest.approx(expected, abs=1e-12)


def test_identical_models_are_level_with_a_zero_width_interval() -> None:
    rng = np.random.default_rng(1)
    values = ItemScores(rng.random((1, 200)))
    diff = paired_difference(values, values, key="t")
    assert (diff.mean, diff.ci_low, diff.ci_high) == (0.0, 0.0, 0.0)
    assert diff.verdict(0.005) is Verdict.LEVEL


def test_a_clear_drop_is_worse_and_a_clear_gain_better() -> None:
    rng = np.random.default_rng(2)
    base = rng.random((1, 400))
    worse = ItemScores(base - 0.05 + rng.normal(0, 0.01, base.shape))
    better = ItemScores(base + 0.05 + rng.normal(0, 0.01, base.shape))
    assert paired_difference(worse, ItemScores(base), key="t").verdict(0.005) is Verdict.WORSE
    assert paired_difference(better, ItemScores(base), key="t").verdict(0.005) is Verdict.BETTER


def test_resampling_seeds_widens_the_interval_when_seeds_disagree() -> None:
    """Two training seeds that differ a lot must not look like one precise model."""
    rng = np.random.default_rng(3)
    base = rng.random((1, 300))
    agree = ItemScores(np.concatenate([base + 0.02, base + 0.02]))
    disagree = ItemScores(np.concatenate([base - 0.03, base + 0.07]))
    narrow = paired_difference(agree, ItemScores(base), key="t")
    wide = paired_difference(disagree, ItemScores(base), key="t")
    assert narrow.mean == pytest.approx(wide.mean)
    assert (wide.ci_high - wide.ci_low) > 5 * (narrow.ci_high - narrow.ci_low)


def test_false_refusal_rate_at_the_margin_is_at_most_the_tail() -> None:
    """A candidate truly worse by exactly the margin is called worse in about 2.5 % of
    evaluations (the rule's type-I error at 95 %; this seed gives 9 of 300, and the percentile
    interval's coverage is 94 %); a binomial(300, 0.025) exceeds 16 with probability < 0.1 %."""
    rng = np.random.default_rng(4)
    margin, refused = 0.01, 0
    for trial in range(300):
        base = rng.normal(0.6, 0.2, size=(1, 250))
        cand = base - margin + rng.normal(0, 0.1, size=base.shape)
        diff = paired_difference(ItemScores(cand), ItemScores(base), key=f"s{trial}", n_boot=300)
        refused += diff.verdict(margin) is Verdict.WORSE
    assert refused <= 16


def test_draws_are_paired_between_the_two_sides() -> None:
    """A draw that is hard for both models must not add noise to their difference."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=200)
    base_pred, cand_pred = [], []
    for accuracy in (0.4, 0.9, 0.6):  # draws of very different difficulty, shared
        b = _classification(rng, y, accuracy, 1, 1).pred[0, 0]
        c = b.copy()
        flip = rng.random(len(y)) < 0.05
        c[flip] = y[flip]  # the candidate fixes a few of the base's errors in every draw
        base_pred.append(b)
        cand_pred.append(c)
    base = ClassificationScores(y, np.asarray([base_pred]), 3)
    cand = ClassificationScores(y, np.asarray([cand_pred]), 3)
    diff = paired_difference(cand, base, key="d")
    assert diff.ci_low > 0  # the gain is clear despite the draws' spread of 0.3+ in F1


def test_pairing_refuses_different_items_or_draws() -> None:
    y = np.zeros(10, dtype=np.int64)
    y[5:] = 1
    a = ClassificationScores(y, np.zeros((1, 2, 10), dtype=np.int64), 2)
    b = ClassificationScores(y, np.zeros((1, 3, 10), dtype=np.int64), 2)
    with pytest.raises(PairingError, match="draws"):
        paired_difference(a, b, key="x")
    with pytest.raises(PairingError, match="items"):
        paired_difference(ItemScores(np.zeros((1, 3))), ItemScores(np.zeros((1, 4))), key="x")
    with pytest.raises(PairingError):
        paired_difference(a, ItemScores(np.zeros((1, 10))), key="x")


def test_stored_form_round_trips_and_pairs_by_item_ids() -> None:
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, size=50)
    a = _classification(rng, y, 0.8, 1, 5)
    b = _classification(rng, y, 0.6, 1, 5)
    ids = [f"n{i}" for i in range(50)]
    record = scores_to_json(a, ids)
    back, back_ids = scores_from_json(record)
    assert back_ids == ids and isinstance(back, ClassificationScores)
    assert np.array_equal(back.pred, a.pred)
    diff = pair_stored(record, scores_to_json(b, ids), key="k")
    assert diff.verdict(0.005) is Verdict.BETTER
    with pytest.raises(PairingError, match="different items"):
        pair_stored(record, scores_to_json(b, ids[::-1]), key="k")
    with pytest.raises(PairingError, match="unreadable"):
        scores_from_json({"kind": "items", "ids": ["a"]})


def test_stack_seeds_concatenates_runs() -> None:
    runs = [ItemScores(np.full((1, 4), v)) for v in (0.1, 0.3)]
    stacked = stack_seeds(runs)
    assert isinstance(stacked, ItemScores) and stacked.values.shape == (2, 4)
    assert point_value(stacked) == pytest.approx(0.2)


def test_refusal_probability_gives_the_rule_its_error_rates() -> None:
    assert refusal_probability(-0.005, 0.005, se=0.01) == pytest.approx(0.025, abs=1e-3)
    assert refusal_probability(0.0, 0.005, se=0.01) < 0.01
    assert refusal_probability(-0.05, 0.005, se=0.01) > 0.99
