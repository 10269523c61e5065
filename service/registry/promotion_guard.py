"""The promotion guard's judgement: compare two versions' evaluation-suite results, decide.

Pure functions over `eval_metrics["suite"]` (written by `notespace evaluate --suite`); the
registry records what they decide. Only like is compared with like: the same suite name,
fingerprint (suite definition + data + N/seeds) and split, and per task the same primary metric.

A task decides on the paired interval of (candidate − reference) from the two versions' stored
per-item scores (service/paired_intervals.py, the rule every decision uses): the candidate is
worse when the whole interval lies below −margin. A task the reference has and the candidate
lacks, or whose scores cannot be read or paired, cannot be judged, and refuses the promotion
unless forced: a candidate must not pass by leaving out the task it regresses on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.errors import PromotionRefused, PromotionRegression, PromotionUnverified
from service.paired_intervals import PairedDiff, PairingError, Verdict, pair_stored

SUITE_KEY = "suite"


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
    """One task: the candidate against one reference version (the one replaced, or the best
    version ever promoted on this task), by the paired interval of their item scores."""

    task: str
    metric: str
    higher_is_better: bool
    candidate: float
    against: float
    against_ref: str
    margin: float
    diff: PairedDiff | None = None  # None when `problem` says why it could not be paired
    problem: str | None = None

    @property
    def drop(self) -> float:
        """How much worse the candidate's point value is (negative: better)."""
        diff = self.against - self.candidate
        return diff if self.higher_is_better else -diff

    @property
    def signed(self) -> PairedDiff | None:
        """The interval oriented so that positive is better, whatever the metric's direction."""
        d = self.diff
        if d is None or self.higher_is_better:
            return d
        return PairedDiff(-d.mean, -d.ci_high, -d.ci_low, d.confidence, d.items, d.draws, d.seeds)

    @property
    def verdict(self) -> Verdict | None:
        signed = self.signed
        return None if signed is None else signed.verdict(self.margin)

    @property
    def regressed(self) -> bool:
        return self.verdict is Verdict.WORSE

    def as_dict(self) -> dict[str, Any]:
        signed = self.signed
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "candidate": self.candidate if math.isfinite(self.candidate) else None,
            "against": self.against,
            "against_ref": self.against_ref,
            "drop": self.drop if math.isfinite(self.drop) else None,
            "margin": self.margin,
            "interval": None if signed is None else signed.as_dict(),
            "verdict": None if self.verdict is None else self.verdict.value,
            "regressed": self.regressed,
            **({"problem": self.problem} if self.problem else {}),
        }

    def describe(self) -> str:
        if self.problem is not None:
            return f"{self.task}: {self.problem}"
        signed = self.signed
        assert signed is not None
        return (
            f"{self.task}: {self.metric} {_num(self.candidate)} vs {_num(self.against)} on "
            f"{self.against_ref}, difference {_num(signed.mean)} "
            f"[{_num(signed.ci_low)}, {_num(signed.ci_high)}] wholly below -{_num(self.margin)}"
        )


@dataclass(frozen=True)
class SuiteComparison:
    """What comparing suite results found; `problem` says why they do not compare at all."""

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

    @property
    def unjudged(self) -> tuple[TaskComparison, ...]:
        """Tasks the reference has results for that the candidate's cannot be judged on."""
        return tuple(t for t in self.tasks if t.problem is not None)

    def tasks_record(self) -> dict[str, Any] | None:
        if not self.tasks and not self.skipped:
            return None
        record: dict[str, Any] = {}
        for t in self.tasks:
            # the replaced version first; the best promoted ancestor beside it
            key = t.task if t.task not in record else f"{t.task} vs {t.against_ref}"
            record[key] = t.as_dict()
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


def _unlike(
    candidate: Mapping[str, Any], candidate_ref: str, other: Mapping[str, Any], other_ref: str
) -> SuiteComparison | None:
    """Why two suite results cannot be compared at all, or None when they can."""
    problem = _suite_problem(candidate, candidate_ref) or _suite_problem(other, other_ref)
    if problem:
        return SuiteComparison(problem)
    name, fingerprint = str(candidate["name"]), str(candidate["fingerprint"])
    if other["name"] != name:
        return SuiteComparison(
            f"different suites ({candidate_ref}: {name!r}, {other_ref}: {other['name']!r})"
        )
    if other["fingerprint"] != fingerprint:
        return SuiteComparison(
            f"suite {name!r} was run with different definitions, data or seeds "
            f"(fingerprint {fingerprint[:12]} on {candidate_ref}, "
            f"{str(other['fingerprint'])[:12]} on {other_ref}); evaluate both again",
            suite_name=name,
        )
    if candidate.get("split") != other.get("split"):
        return SuiteComparison(
            f"suite {name!r} was scored on different splits ({candidate.get('split')!r} on "
            f"{candidate_ref}, {other.get('split')!r} on {other_ref})",
            suite_name=name,
            suite_fingerprint=fingerprint,
        )
    return None


def _items(suite: Mapping[str, Any], task: str) -> Any:
    items = suite.get("items")
    return items.get(task) if isinstance(items, Mapping) else None


def _compare_task(
    task: str,
    candidate: Mapping[str, Any],
    candidate_ref: str,
    other: Mapping[str, Any],
    other_ref: str,
    margin: float,
) -> TaskComparison | str:
    """The candidate against one reference on one task, or why the task is skipped (only
    when the reference has no usable result for it: then there is nothing to defend)."""
    theirs = _primary(other["primary"].get(task))
    if theirs is None:
        return f"malformed result on {other_ref}"
    metric, value, higher = theirs
    mine = _primary(candidate["primary"].get(task))

    def unjudged(problem: str) -> TaskComparison:
        return TaskComparison(
            task, metric, higher, math.nan, value, other_ref, margin, problem=problem
        )

    if task not in candidate["primary"]:
        return unjudged(f"{candidate_ref} has no result for it ({other_ref} has)")
    if mine is None:
        return unjudged(f"the result of {candidate_ref} cannot be read")
    if (mine[0], mine[2]) != (metric, higher):
        return unjudged(f"different metrics ({mine[0]} on {candidate_ref}, {metric})")
    try:
        diff = pair_stored(_items(candidate, task), _items(other, task), key=task)
    except (PairingError, TypeError) as exc:
        reason = str(exc) if isinstance(exc, PairingError) else "missing"
        return TaskComparison(
            task,
            metric,
            higher,
            mine[1],
            value,
            other_ref,
            margin,
            problem=f"item scores cannot be paired ({reason}); evaluate both with this suite",
        )
    return TaskComparison(task, metric, higher, mine[1], value, other_ref, margin, diff)


def _best_ancestor(
    task: str,
    candidate: Mapping[str, Any],
    candidate_ref: str,
    ancestors: Sequence[tuple[str, Mapping[str, Any] | None]],
) -> tuple[str, Mapping[str, Any]] | None:
    """The version ever promoted with the best like-for-like result on `task`."""
    best: tuple[float, str, Mapping[str, Any]] | None = None
    for ref, metrics in ancestors:
        suite = suite_results(metrics)
        if suite is None or _unlike(candidate, candidate_ref, suite, ref) is not None:
            continue
        entry = _primary(suite["primary"].get(task))
        if entry is None or _items(suite, task) is None:
            continue
        score = entry[1] if entry[2] else -entry[1]
        if best is None or score > best[0]:
            best = (score, ref, suite)
    return None if best is None else (best[1], best[2])


def compare_suites(
    candidate_ref: str,
    candidate_metrics: Mapping[str, Any] | None,
    against_ref: str,
    against_metrics: Mapping[str, Any] | None,
    policy: PromotionPolicy,
    ancestors: Sequence[tuple[str, Mapping[str, Any] | None]] = (),
) -> SuiteComparison:
    """Compare the candidate, task by task, with the version it would replace and with the
    best of the versions ever promoted before (`ancestors`), so that drops within the
    interval's reach cannot pile up over successive promotions."""
    candidate, against = suite_results(candidate_metrics), suite_results(against_metrics)
    if candidate is None:
        return SuiteComparison(f"{candidate_ref} has no evaluation-suite results")
    if against is None:
        return SuiteComparison(f"{against_ref} has no evaluation-suite results")
    unlike = _unlike(candidate, candidate_ref, against, against_ref)
    if unlike is not None:
        return unlike
    name, fingerprint = str(candidate["name"]), str(candidate["fingerprint"])
    tasks: list[TaskComparison] = []
    skipped: dict[str, str] = {}
    for task in sorted(set(candidate["primary"]) | set(against["primary"])):
        if task not in against["primary"]:
            skipped[task] = f"only {candidate_ref} has it"
            continue
        margin = policy.margin_for(task)
        found = _compare_task(task, candidate, candidate_ref, against, against_ref, margin)
        if isinstance(found, str):
            skipped[task] = found
            continue
        tasks.append(found)
        if found.problem is not None:
            continue
        best = _best_ancestor(task, candidate, candidate_ref, ancestors)
        if best is not None and best[0] != against_ref:
            ancestor = _compare_task(task, candidate, candidate_ref, best[1], best[0], margin)
            if isinstance(ancestor, TaskComparison) and ancestor.problem is None:
                tasks.append(ancestor)
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
    if comparison.unjudged:
        reason = (
            f"{candidate_ref} cannot be judged against {against_ref} on suite "
            f"{comparison.suite_name!r}: " + "; ".join(t.describe() for t in comparison.unjudged)
        )
        if force:
            return Decision(PromotionOutcome.FORCED, reason + forced_by, comparison)
        return Decision(PromotionOutcome.REFUSED, reason, comparison, PromotionUnverified)
    regressions = comparison.regressions
    if not regressions:
        against = sorted({t.against_ref for t in comparison.tasks})
        reason = (
            f"no task of suite {comparison.suite_name!r} is worse than {', '.join(against)} "
            f"beyond its margin with {_confidence(comparison)} confidence "
            f"({len({t.task for t in comparison.tasks})} compared"
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
        + "; ".join(t.describe() for t in regressions)
    )
    if force:
        return Decision(PromotionOutcome.FORCED, reason + forced_by, comparison)
    return Decision(PromotionOutcome.REFUSED, reason, comparison, PromotionRegression)


def _confidence(comparison: SuiteComparison) -> str:
    levels = {t.diff.confidence for t in comparison.tasks if t.diff is not None}
    return "/".join(f"{c:.0%}" for c in sorted(levels)) or "95%"
