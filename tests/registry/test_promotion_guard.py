"""The promotion guard's judgement on suite results: like with like, margins, direction, edges."""

from __future__ import annotations

from typing import Any

import pytest

from service.errors import PromotionRegression, PromotionUnverified
from service.registry.promotion_guard import (
    PromotionOutcome,
    PromotionPolicy,
    compare_suites,
    decide,
)

FINGERPRINT = "a" * 64
METRICS = {"mtsamples-specialty": "macro_f1@16", "medquad-retrieval": "ndcg@10"}


def suite(
    values: dict[str, float], *, name: str = "default", fingerprint: str = FINGERPRINT, **extra: Any
) -> dict[str, Any]:
    """eval_metrics as `notespace evaluate --suite` stores them (the fields the guard reads)."""
    primary = {
        task: {"metric": METRICS.get(task, "macro_f1@16"), "value": v, "higher_is_better": True}
        for task, v in values.items()
    }
    return {
        "suite": {
            "name": name,
            "fingerprint": fingerprint,
            "split": "test",
            "evaluated_at": "2026-12-01T12:00:00+00:00",
            "runtime": "onnxruntime-fp32",
            "primary": primary,
            "tasks": {},
            "baseline": {},
        }
        | extra
    }


ACTIVE = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})


def judge(
    candidate: dict[str, Any] | None,
    against: dict[str, Any] | None = ACTIVE,
    *,
    policy: PromotionPolicy | None = None,
    force: bool = False,
) -> Any:
    policy = policy or PromotionPolicy()
    comparison = compare_suites("m@2", candidate, "m@1", against, policy)
    return decide(comparison, candidate_ref="m@2", against_ref="m@1", policy=policy, force=force)


def test_a_drop_exactly_at_the_margin_passes_and_beyond_it_is_refused() -> None:
    # 0.83 - 0.825 is 0.0050000000000000044 in floats: still "exactly at the margin".
    at_margin = judge(suite({"mtsamples-specialty": 0.825, "medquad-retrieval": 0.605}))
    assert at_margin.outcome is PromotionOutcome.PASSED, at_margin.reason
    assert [t.regressed for t in at_margin.comparison.tasks] == [False, False]

    beyond = judge(suite({"mtsamples-specialty": 0.8249, "medquad-retrieval": 0.61}))
    assert beyond.outcome is PromotionOutcome.REFUSED
    assert beyond.refusal is PromotionRegression
    (regression,) = beyond.comparison.regressions
    assert regression.task == "mtsamples-specialty"
    assert regression.drop == pytest.approx(0.0051, abs=1e-12)
    assert (
        "mtsamples-specialty: macro_f1@16 0.8249 vs 0.83 on m@1 (drop 0.0051 > margin 0.005)"
        in beyond.reason
    )
    assert "medquad-retrieval" not in beyond.reason  # only the tasks that regressed are named


def test_better_or_equal_passes_and_names_what_was_compared() -> None:
    decision = judge(suite({"mtsamples-specialty": 0.90, "medquad-retrieval": 0.61}))
    assert decision.outcome is PromotionOutcome.PASSED
    assert "2 compared" in decision.reason
    record = decision.comparison.tasks_record()
    assert record["mtsamples-specialty"]["drop"] == pytest.approx(-0.07)
    assert record["medquad-retrieval"] | {"drop": 0} == {
        "metric": "ndcg@10",
        "higher_is_better": True,
        "candidate": 0.61,
        "against": 0.61,
        "drop": 0,
        "margin": 0.005,
        "regressed": False,
    }


def test_force_turns_a_refusal_into_forced_with_the_same_evidence() -> None:
    decision = judge(suite({"mtsamples-specialty": 0.70, "medquad-retrieval": 0.40}), force=True)
    assert decision.outcome is PromotionOutcome.FORCED and decision.refusal is None
    assert {t.task for t in decision.comparison.regressions} == set(METRICS)
    assert "forced" in decision.reason and "drop 0.21" in decision.reason


def test_lower_is_better_metrics_count_a_rise_as_the_drop() -> None:
    def perplexity(value: float) -> dict[str, Any]:
        metrics = suite({"mlm": value})
        metrics["suite"]["primary"]["mlm"] |= {"metric": "perplexity", "higher_is_better": False}
        return metrics

    assert judge(perplexity(3.0), perplexity(3.2)).outcome is PromotionOutcome.PASSED
    worse = judge(perplexity(3.2), perplexity(3.0))
    assert worse.outcome is PromotionOutcome.REFUSED
    assert worse.comparison.tasks[0].drop == pytest.approx(0.2)


def test_per_task_margins_override_the_default() -> None:
    candidate = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.59})
    assert judge(candidate).outcome is PromotionOutcome.REFUSED
    lenient = PromotionPolicy(task_margins={"medquad-retrieval": 0.02})
    decision = judge(candidate, policy=lenient)
    assert decision.outcome is PromotionOutcome.PASSED
    assert decision.comparison.tasks_record()["medquad-retrieval"]["margin"] == 0.02


@pytest.mark.parametrize(
    ("candidate", "against", "why"),
    [
        (None, ACTIVE, "m@2 has no evaluation-suite results"),
        ({"accuracy": 0.9}, ACTIVE, "m@2 has no evaluation-suite results"),
        (ACTIVE, None, "m@1 has no evaluation-suite results"),
        (suite({"mtsamples-specialty": 0.1}, fingerprint="b" * 64), ACTIVE, "fingerprint bbbb"),
        (suite({"mtsamples-specialty": 0.1}, name="trust-x"), ACTIVE, "different suites"),
        (suite({"mtsamples-specialty": 0.1}, split="val"), ACTIVE, "different splits"),
        (suite({"other-task": 0.1}), ACTIVE, "no task of suite 'default' has the same metric"),
        ({"suite": {"name": "default", "primary": {}}}, ACTIVE, "malformed (no 'fingerprint')"),
    ],
)
def test_unlike_results_are_not_comparable(
    candidate: dict[str, Any] | None, against: dict[str, Any] | None, why: str
) -> None:
    decision = judge(candidate, against)
    assert decision.outcome is PromotionOutcome.NOT_COMPARABLE
    assert why in decision.reason
    strict = judge(candidate, against, policy=PromotionPolicy(requires_eval=True))
    assert strict.outcome is PromotionOutcome.REFUSED and strict.refusal is PromotionUnverified
    assert "NOTESPACE_PROMOTION_REQUIRES_EVAL" in strict.reason
    forced = judge(candidate, against, policy=PromotionPolicy(requires_eval=True), force=True)
    assert forced.outcome is PromotionOutcome.FORCED


def test_only_tasks_both_have_with_the_same_metric_are_compared() -> None:
    candidate = suite({"mtsamples-specialty": 0.70, "new-task": 0.5})
    candidate["suite"]["primary"]["mtsamples-specialty"]["metric"] = "macro_f1@64"
    against = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61, "new-task": 0.5})
    decision = judge(candidate, against)
    assert decision.outcome is PromotionOutcome.PASSED  # new-task is the only like-for-like one
    assert [t.task for t in decision.comparison.tasks] == ["new-task"]
    assert decision.comparison.skipped == {
        "medquad-retrieval": "only m@1 has it",
        "mtsamples-specialty": "different metrics (macro_f1@64 vs macro_f1@16)",
    }
    assert "not compared: medquad-retrieval, mtsamples-specialty" in decision.reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.9", True, None])
def test_unusable_values_are_skipped_never_compared(bad: object) -> None:
    candidate = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
    candidate["suite"]["primary"]["medquad-retrieval"]["value"] = bad
    decision = judge(candidate)
    assert [t.task for t in decision.comparison.tasks] == ["mtsamples-specialty"]
    assert decision.comparison.skipped["medquad-retrieval"] == "malformed result on m@2"
    assert decision.outcome is PromotionOutcome.PASSED


def test_nothing_to_compare_against_is_allowed_even_when_results_are_required() -> None:
    policy = PromotionPolicy(requires_eval=True)
    comparison = compare_suites("m@1", None, "-", None, policy)
    decision = decide(comparison, candidate_ref="m@1", against_ref=None, policy=policy, force=False)
    assert decision.outcome is PromotionOutcome.NOT_COMPARABLE
    assert "no active version to compare against" in decision.reason
