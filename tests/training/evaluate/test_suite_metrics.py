"""Retrieval metrics against hand-computed values, and the paired bootstrap the suite uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from service.paired_intervals import (
    ClassificationScores,
    ItemScores,
    paired_difference,
    weighted_macro_f1,
)
from training.evaluate.suite.retrieval import evaluate_ranking, per_query_metrics, rank_documents
from training.evaluate.suite.tasks import Query

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10")


def test_ranking_metrics_on_three_queries_by_hand() -> None:
    # q1: its one relevant document ranked 1st. q2: relevant {b, c} at ranks 2 and 4.
    # q3: relevant {x, y}, only y retrieved, at rank 3; x is not in the top 10.
    ranked = [
        ["a", "b", "c"],
        ["a", "b", "z", "c", "d"],
        ["p", "q", "y", "r"],
    ]
    relevant = [frozenset({"a"}), frozenset({"b", "c"}), frozenset({"x", "y"})]
    got = per_query_metrics(ranked, relevant, METRICS)
    log2 = math.log2
    ndcg2 = (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3))
    ndcg3 = (1 / log2(4)) / (1 + 1 / log2(3))
    np.testing.assert_allclose(got["ndcg@10"], [1.0, ndcg2, ndcg3], atol=1e-12)
    np.testing.assert_allclose(got["mrr@10"], [1.0, 0.5, 1 / 3], atol=1e-12)
    np.testing.assert_allclose(got["recall@1"], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(got["recall@10"], [1.0, 1.0, 0.5], atol=1e-12)


def test_cosine_ranking_and_within_group_accuracy() -> None:
    docs = np.asarray([[1, 0], [0.8, 0.6], [0, 1], [0.6, 0.8]], dtype=np.float32)
    queries = np.asarray([[1, 0], [0, 1]], dtype=np.float32)
    assert rank_documents(queries, docs, 3).tolist() == [[0, 1, 3], [2, 3, 1]]
    # Equal scores keep index order.
    assert rank_documents(queries[:1], np.asarray([[0, 1], [0, 1]], np.float32), 2).tolist() == [
        [0, 1]
    ]
    qs = [
        Query("q1", "", frozenset({"d1"}), group="g2"),  # best in its group g2 = {d1, d3}: d1
        Query("q2", "", frozenset({"d0"}), group="g1"),  # best in g1 = {d0, d2}: d2, wrong
    ]
    ids = ["d0", "d1", "d2", "d3"]
    got = evaluate_ranking(
        queries, docs, qs, ids, ("mrr@10", "within_group_acc@1"), ["g1", "g2", "g1", "g2"]
    )
    assert got["within_group_acc@1"].tolist() == [1.0, 0.0]
    assert got["mrr@10"].tolist() == [0.5, 0.25]  # d1 2nd for q1; d0 4th for q2


def test_weighted_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 50)
    pred = rng.integers(0, 4, (3, 50))
    ones = np.ones((1, 50))
    ours = weighted_macro_f1(y, pred, ones, 4)[0]
    theirs = [f1_score(y, p, labels=range(4), average="macro", zero_division=0) for p in pred]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    # Counts as weights = the same items repeated.
    w = rng.integers(0, 3, (1, 50)).astype(np.float64)
    rep = np.repeat(np.arange(50), w[0].astype(int))
    expected = f1_score(y[rep], pred[0][rep], labels=range(4), average="macro", zero_division=0)
    assert weighted_macro_f1(y, pred[:1], w, 4)[0, 0] == pytest.approx(expected, abs=1e-12)


def _classes(y: np.ndarray, pred: np.ndarray, n: int) -> ClassificationScores:
    return ClassificationScores(y, pred[None], n)


def test_a_model_compared_with_itself_differs_by_exactly_zero() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 40)
    pred = rng.integers(0, 3, (5, 40))
    diff = paired_difference(_classes(y, pred, 3), _classes(y, pred.copy(), 3), n_boot=200, key="t")
    assert (diff.mean, diff.ci_low, diff.ci_high) == (0.0, 0.0, 0.0)
    values = rng.random((1, 30))
    same = paired_difference(ItemScores(values), ItemScores(values.copy()), n_boot=200, key="t")
    assert (same.mean, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)


def test_a_known_shift_is_recovered() -> None:
    rng = np.random.default_rng(2)
    base = ItemScores(rng.random((1, 400)))
    shifted = paired_difference(ItemScores(base.values + 0.05), base, n_boot=300, key="t")
    assert shifted.mean == pytest.approx(0.05) and shifted.ci_low == pytest.approx(0.05)
    noise = rng.normal(0, 0.1, (1, 400))
    noisy = paired_difference(ItemScores(base.values + 0.05 + noise), base, n_boot=500, key="t")
    assert noisy.ci_low < 0.05 < noisy.ci_high and noisy.ci_low > 0
    # Classification: the candidate fixes 20 of the baseline's 40 errors on 200 items.
    y = np.repeat(np.arange(2), 100)
    wrong = np.r_[0:20, 100:120]
    baseline = y.copy()
    baseline[wrong] = 1 - baseline[wrong]
    candidate = baseline.copy()
    candidate[wrong[::2]] = y[wrong[::2]]
    pair = (_classes(y, candidate[None], 2), _classes(y, baseline[None], 2))
    diff = paired_difference(*pair, n_boot=500, key="c")
    expected = f1_score(y, candidate, average="macro") - f1_score(y, baseline, average="macro")
    assert diff.mean == pytest.approx(expected, abs=1e-12)
    assert 0 < diff.ci_low < expected < diff.ci_high
    # The same resamples for the same key: reproducible.
    assert paired_difference(*pair, n_boot=500, key="c") == diff
