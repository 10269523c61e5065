"""The promotion guard's judgement on suite results: like with like, paired intervals against
the margin, direction, missing tasks, ancestors, edges."""

from __future__ import annotations

from typing import Any

import numpy as np
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
ITEMS = 40
# Zero-mean per-item pattern: a version scoring `v` has items pattern + v, so two versions
# differ by the same amount on every item and the interval is the point difference.
PATTERN = np.linspace(-0.1, 0.1, ITEMS)


def items(value: float, noise: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Stored per-item scores whose mean is `value` (+ per-item noise of sd `noise`)."""
    jitter = np.random.default_rng(seed).normal(0, noise, ITEMS) if noise else 0.0
    return {
        "kind": "items",
        "ids": [f"q{i}" for i in range(ITEMS)],
        "values": [list(PATTERN + value + jitter)],
    }


def suite(
    values: dict[str, float],
    *,
    name: str = "default",
    fingerprint: str = FINGERPRINT,
    noise: float = 0.0,
    seed: int = 0,
    **extra: Any,
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
            "items": {task: items(v, noise, seed) for task, v in values.items()},
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
    ancestors: list[tuple[str, dict[str, Any]]] | None = None,
) -> Any:
    policy = policy or PromotionPolicy()
    comparison = compare_suites("m@2", candidate, "m@1", against, policy, ancestors or [])
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
    assert "mtsamples-specialty: macro_f1@16 0.8249 vs 0.83 on m@1, difference -0.0051" in (
        beyond.reason
    )
    assert "wholly below -0.005" in beyond.reason
    assert "medquad-retrieval" not in beyond.reason  # only the tasks that regressed are named


def test_a_point_drop_within_the_noise_passes() -> None:
    """The old rule refused any point drop beyond the margin; the interval rule refuses only
    a drop the data are sure of. Noisy items, a point drop of 0.008 > 0.005: level."""
    active = suite({"mtsamples-specialty": 0.83}, noise=0.05, seed=1)
    candidate = suite({"mtsamples-specialty": 0.822}, noise=0.05, seed=2)
    decision = judge(candidate, active)
    (task,) = decision.comparison.tasks
    assert task.drop > 0.005 and task.verdict.value == "level"
    assert decision.outcome is PromotionOutcome.PASSED, decision.reason
    # The same noise with a large drop is refused.
    worse = suite({"mtsamples-specialty": 0.76}, noise=0.05, seed=2)
    assert judge(worse, active).outcome is PromotionOutcome.REFUSED


def test_better_or_equal_passes_and_names_what_was_compared() -> None:
    decision = judge(suite({"mtsamples-specialty": 0.90, "medquad-retrieval": 0.61}))
    assert decision.outcome is PromotionOutcome.PASSED
    assert "2 compared" in decision.reason and "95% confidence" in decision.reason
    record = decision.comparison.tasks_record()
    assert record["mtsamples-specialty"]["drop"] == pytest.approx(-0.07)
    assert record["mtsamples-specialty"]["verdict"] == "better"
    retrieval = record["medquad-retrieval"]
    assert retrieval["verdict"] == "level" and retrieval["regressed"] is False
    assert retrieval["against_ref"] == "m@1" and retrieval["margin"] == 0.005
    assert retrieval["interval"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert retrieval["interval"]["items"] == ITEMS


def test_force_turns_a_refusal_into_forced_with_the_same_evidence() -> None:
    decision = judge(suite({"mtsamples-specialty": 0.70, "medquad-retrieval": 0.40}), force=True)
    assert decision.outcome is PromotionOutcome.FORCED and decision.refusal is None
    assert {t.task for t in decision.comparison.regressions} == set(METRICS)
    assert "forced" in decision.reason and "difference -0.21" in decision.reason


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


def test_a_candidate_lacking_a_task_the_active_version_has_is_refused() -> None:
    """Leaving out the task it regresses on must not let a candidate through (before, such a
    task was 'skipped' and the promotion passed on the others)."""
    decision = judge(suite({"mtsamples-specialty": 0.85}))
    assert decision.outcome is PromotionOutcome.REFUSED
    assert decision.refusal is PromotionUnverified
    assert "medquad-retrieval: m@2 has no result for it (m@1 has)" in decision.reason
    forced = judge(suite({"mtsamples-specialty": 0.85}), force=True)
    assert forced.outcome is PromotionOutcome.FORCED
    # A task only the candidate has is simply not compared.
    extra = judge(suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61, "new": 0.1}))
    assert extra.outcome is PromotionOutcome.PASSED
    assert extra.comparison.skipped == {"new": "only m@2 has it"}


def test_a_different_metric_on_a_task_cannot_be_judged() -> None:
    candidate = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
    candidate["suite"]["primary"]["mtsamples-specialty"]["metric"] = "macro_f1@64"
    decision = judge(candidate)
    assert decision.outcome is PromotionOutcome.REFUSED
    assert "different metrics (macro_f1@64 on m@2, macro_f1@16)" in decision.reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.9", True, None])
def test_an_unreadable_candidate_value_is_refused(bad: object) -> None:
    candidate = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
    candidate["suite"]["primary"]["medquad-retrieval"]["value"] = bad
    decision = judge(candidate, force=False, policy=PromotionPolicy(requires_eval=False))
    assert decision.outcome is PromotionOutcome.REFUSED
    assert "medquad-retrieval: the result of m@2 cannot be read" in decision.reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s["suite"].pop("items"),  # evaluated before item scores were stored
        lambda s: s["suite"]["items"]["medquad-retrieval"].update(ids=["x"] * ITEMS),
        lambda s: s["suite"]["items"]["medquad-retrieval"].update(values="oops"),
    ],
)
def test_item_scores_that_cannot_be_paired_are_refused(damage: Any) -> None:
    candidate = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
    damage(candidate)
    decision = judge(candidate)
    assert decision.outcome is PromotionOutcome.REFUSED
    assert decision.refusal is PromotionUnverified
    assert "item scores cannot be paired" in decision.reason


def test_an_unusable_reference_value_is_skipped() -> None:
    active = suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61})
    active["suite"]["primary"]["medquad-retrieval"]["value"] = None
    decision = judge(suite({"mtsamples-specialty": 0.83, "medquad-retrieval": 0.61}), active)
    assert decision.comparison.skipped["medquad-retrieval"] == "malformed result on m@1"
    assert decision.outcome is PromotionOutcome.PASSED


def test_drops_cannot_pile_up_over_successive_promotions() -> None:
    """v1 (0.83) -> v2 (0.826, within the margin of v1) -> candidate (0.822, within the margin
    of v2 but 0.008 below v1): refused against the best promoted ancestor."""
    v1 = suite({"mtsamples-specialty": 0.83})
    v2 = suite({"mtsamples-specialty": 0.826})
    candidate = suite({"mtsamples-specialty": 0.822})
    assert judge(candidate, v2).outcome is PromotionOutcome.PASSED  # the old, one-step view
    decision = judge(candidate, v2, ancestors=[("m@0", v1), ("m@1", v2)])
    assert decision.outcome is PromotionOutcome.REFUSED, decision.reason
    assert "0.822 vs 0.83 on m@0" in decision.reason
    record = decision.comparison.tasks_record()
    assert record["mtsamples-specialty"]["against_ref"] == "m@1"
    assert record["mtsamples-specialty vs m@0"]["regressed"] is True
    # Ancestors evaluated with another suite are not compared.
    other = suite({"mtsamples-specialty": 0.99}, fingerprint="c" * 64)
    assert judge(candidate, v2, ancestors=[("m@0", other)]).outcome is PromotionOutcome.PASSED


def test_nothing_to_compare_against_is_allowed_even_when_results_are_required() -> None:
    policy = PromotionPolicy(requires_eval=True)
    comparison = compare_suites("m@1", None, "-", None, policy)
    decision = decide(comparison, candidate_ref="m@1", against_ref=None, policy=policy, force=False)
    assert decision.outcome is PromotionOutcome.NOT_COMPARABLE
    assert "no active version to compare against" in decision.reason
