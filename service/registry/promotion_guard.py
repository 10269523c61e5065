"""The promotion guard's judgement: compare two versions' evaluation-suite results, decide.

Pure functions over `eval_metrics["suite"]` (written by `notespace evaluate --suite`); the
registry records what they decide. Only like is compared with like: the same suite name,
fingerprint (suite definition + data + N/seeds) and split, and per task the same primary metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.errors import PromotionRefused, PromotionRegression, PromotionUnverified

SUITE_KEY = "suite"
# Drops are differences of floats read back from JSON: 0.83 - 0.825 is 0.0050000000000000044.
# A drop within this of the margin counts as at the margin, which passes.
DROP_TOLERANCE = 1e-9


class PromotionOutcome(StrEnum):
    PASSED = "passed"  # comparable, no task worse beyond its margin
    REFUSED = "refused"  # the guard stopped the promotion
    FORCED = "forced"  # the guard would have refused; an operator overrode it
    NOT_COMPARABLE = "not_comparable"  # nothing like-for-like to compare; allowed by policy


@dataclass(frozen=True)
class PromotionPolicy:
    """How much worse a candidate may be, per task, and whether results are required."""

    margin: float = 0.005
    task_margins: Mapping[str, float] = field(default_factory=dict)
    requires_eval: bool = False

    def margin_for(self, task: str) -> float:
        return self.task_margins.get(task, self.margin)


@dataclass(frozen=True)
class TaskComparison:
    task: str
    metric: str
    higher_is_better: bool
    candidate: float
    against: float
    margin: float

    @property
    def drop(self) -> float:
        """How much worse the candidate is (negative: better), whatever the metric's direction."""
        diff = self.against - self.candidate
        return diff if self.higher_is_better else -diff

    @property
    def regressed(self) -> bool:
        return self.drop - self.margin > DROP_TOLERANCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "candidate": self.candidate,
            "against": self.against,
            "drop": self.drop,
            "margin": self.margin,
            "regressed": self.regressed,
        }

    def describe(self, against_ref: str) -> str:
        return (
            f"{self.task}: {self.metric} {_num(self.candidate)} vs {_num(self.against)} on "
            f"{against_ref} (drop {_num(self.drop)} > margin {_num(self.margin)})"
        )


@dataclass(frozen=True)
class SuiteComparison:
    """What comparing two suite results found; `problem` says why they do not compare."""

    problem: str | None
    suite_name: str | None = None
    suite_fingerprint: str | None = None
    tasks: tuple[TaskComparison, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)  # task -> why not compared

    @property
    def comparable(self) -> bool:
        return self.problem is None

    @property
    def regressions(self) -> tuple[TaskComparison, ...]:
        return tuple(t for t in self.tasks if t.regressed)

    def tasks_record(self) -> dict[str, Any] | None:
        if not self.tasks and not self.skipped:
            return None
        record: dict[str, Any] = {t.task: t.as_dict() for t in self.tasks}
        for task, why in self.skipped.items():
            record[task] = {"compared": False, "why": why}
        return record


@dataclass(frozen=True)
class Decision:
    outcome: PromotionOutcome
    reason: str
    comparison: SuiteComparison
    refusal: type[PromotionRefused] | None = None  # set when the outcome is REFUSED


def _num(value: float) -> str:
    return f"{value:.4g}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def suite_results(eval_metrics: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A version's suite results, or None when it was never evaluated with a suite."""
    if not isinstance(eval_metrics, Mapping):
        return None
    suite = eval_metrics.get(SUITE_KEY)
    return suite if isinstance(suite, Mapping) else None


def _suite_problem(suite: Mapping[str, Any], ref: str) -> str | None:
    for key in ("name", "fingerprint"):
        if not isinstance(suite.get(key), str) or not suite[key]:
            return f"the suite results of {ref} are malformed (no {key!r})"
    if not isinstance(suite.get("primary"), Mapping):
        return f"the suite results of {ref} are malformed (no 'primary' metrics)"
    return None


def _primary(entry: object) -> tuple[str, float, bool] | None:
    """(metric, value, higher_is_better) of one task's primary result, or None if unusable."""
    if not isinstance(entry, Mapping):
        return None
    metric, value = entry.get("metric"), entry.get("value")
    higher = entry.get("higher_is_better", True)
    if not isinstance(metric, str) or not _is_number(value) or not isinstance(higher, bool):
        return None
    assert isinstance(value, int | float)
    return metric, float(value), higher


def compare_suites(
    candidate_ref: str,
    candidate_metrics: Mapping[str, Any] | None,
    against_ref: str,
    against_metrics: Mapping[str, Any] | None,
    policy: PromotionPolicy,
) -> SuiteComparison:
    """Compare the candidate's primary metrics with the version it would replace, task by task."""
    candidate, against = suite_results(candidate_metrics), suite_results(against_metrics)
    if candidate is None:
        return SuiteComparison(f"{candidate_ref} has no evaluation-suite results")
    if against is None:
        return SuiteComparison(f"{against_ref} has no evaluation-suite results")
    problem = _suite_problem(candidate, candidate_ref) or _suite_problem(against, against_ref)
    if problem:
        return SuiteComparison(problem)
    name, fingerprint = str(candidate["name"]), str(candidate["fingerprint"])
    if against["name"] != name:
        return SuiteComparison(
            f"different suites ({candidate_ref}: {name!r}, {against_ref}: {against['name']!r})"
        )
    if against["fingerprint"] != fingerprint:
        return SuiteComparison(
            f"suite {name!r} was run with different definitions, data or seeds "
            f"(fingerprint {fingerprint[:12]} on {candidate_ref}, "
            f"{str(against['fingerprint'])[:12]} on {against_ref}); evaluate both again",
            suite_name=name,
        )
    if candidate.get("split") != against.get("split"):
        return SuiteComparison(
            f"suite {name!r} was scored on different splits ({candidate.get('split')!r} on "
            f"{candidate_ref}, {against.get('split')!r} on {against_ref})",
            suite_name=name,
            suite_fingerprint=fingerprint,
        )
    tasks: list[TaskComparison] = []
    skipped: dict[str, str] = {}
    mine, theirs = candidate["primary"], against["primary"]
    for task in sorted(set(mine) | set(theirs)):
        if task not in theirs or task not in mine:
            skipped[task] = f"only {candidate_ref if task in mine else against_ref} has it"
            continue
        a, b = _primary(mine[task]), _primary(theirs[task])
        if a is None or b is None:
            skipped[task] = f"malformed result on {candidate_ref if a is None else against_ref}"
        elif (a[0], a[2]) != (b[0], b[2]):
            skipped[task] = f"different metrics ({a[0]} vs {b[0]})"
        else:
            tasks.append(TaskComparison(task, a[0], a[2], a[1], b[1], policy.margin_for(task)))
    problem = None if tasks else f"no task of suite {name!r} has the same metric in both"
    return SuiteComparison(problem, name, fingerprint, tuple(tasks), skipped)


def decide(
    comparison: SuiteComparison,
    *,
    candidate_ref: str,
    against_ref: str | None,
    policy: PromotionPolicy,
    force: bool,
) -> Decision:
    """Turn a comparison into the guard's outcome and a sentence saying why."""
    if against_ref is None:
        return Decision(
            PromotionOutcome.NOT_COMPARABLE,
            "no active version to compare against (nothing is replaced)",
            comparison,
        )
    forced_by = "; promoted anyway (forced)"
    if not comparison.comparable:
        reason = f"not comparable with {against_ref}: {comparison.problem}"
        if not policy.requires_eval:
            return Decision(PromotionOutcome.NOT_COMPARABLE, reason, comparison)
        reason += " (NOTESPACE_PROMOTION_REQUIRES_EVAL is on)"
        if force:
            return Decision(PromotionOutcome.FORCED, reason + forced_by, comparison)
        return Decision(PromotionOutcome.REFUSED, reason, comparison, PromotionUnverified)
    regressions = comparison.regressions
    if not regressions:
        reason = (
            f"no task of suite {comparison.suite_name!r} is worse than {against_ref} beyond its "
            f"margin ({len(comparison.tasks)} compared"
            + (
                f"; not compared: {', '.join(sorted(comparison.skipped))}"
                if comparison.skipped
                else ""
            )
            + ")"
        )
        return Decision(PromotionOutcome.PASSED, reason, comparison)
    reason = (
        f"{candidate_ref} is worse than {against_ref} on suite {comparison.suite_name!r}: "
        + "; ".join(t.describe(against_ref) for t in regressions)
    )
    if force:
        return Decision(PromotionOutcome.FORCED, reason + forced_by, comparison)
    return Decision(PromotionOutcome.REFUSED, reason, comparison, PromotionRegression)
