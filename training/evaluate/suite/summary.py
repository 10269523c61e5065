"""The primary metric of each task and the record stored in a registered version's
`eval_metrics["suite"]` (what the promotion guard compares)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def primary_metric(task: dict[str, Any]) -> str:
    """classification: the frozen LR probe's macro-F1 at N=16 (`macro_f1@16`; the smallest N
    when 16 is not evaluated); retrieval: the task's primary ranking metric (nDCG@10)."""
    return str(task["primary_metric"])


def primary_value(task: dict[str, Any], label: str) -> float:
    model = task["models"][label]
    if task["kind"] == "classification":
        n = primary_metric(task).split("@")[1]
        return float(model["frozen_lr"][n]["macro_f1"]["mean"])
    return float(model["metrics"][task["primary_metric"]])


def primary_diff(task: dict[str, Any], label: str) -> dict[str, Any] | None:
    """The paired difference (candidate − baseline) on the primary metric, or None for the
    baseline itself."""
    diffs = task["diffs"].get(label)
    if diffs is None:
        return None
    if task["kind"] == "classification":
        n = primary_metric(task).split("@")[1]
        cell: dict[str, Any] = diffs["frozen_lr"][n]
    else:
        cell = diffs[task["name"]][task["primary_metric"]]
    return cell


def _compact(task: dict[str, Any], label: str) -> dict[str, Any]:
    model = task["models"][label]
    if task["kind"] == "retrieval":
        return {
            "metrics": model["metrics"],
            "secondary": {k: v["metrics"] for k, v in model["secondary"].items()},
        }
    out: dict[str, Any] = {}
    for method in ("frozen_lr", "finetune"):
        if method in model:
            out[method] = {
                n: {s: cell[s] for s in ("macro_f1", "accuracy", "weighted_f1")}
                for n, cell in model[method].items()
            }
    if model.get("space"):
        out["space"] = model["space"]
    return out


def registry_record(report: dict[str, Any], label: str) -> dict[str, Any]:
    """eval_metrics["suite"] for one model (format agreed with the promotion guard)."""
    model = report["models"][label]
    baseline = report["baseline"]
    tasks: dict[str, Any] = report["tasks"]
    diff: dict[str, Any] = {}
    for name, task in tasks.items():
        cell = primary_diff(task, label)
        if cell is not None:
            diff[name] = {k: cell[k] for k in ("mean", "ci_low", "ci_high")}
    return {
        "name": report["suite"]["name"],
        "fingerprint": report["suite"]["fingerprint"],
        "split": report["split"],
        "evaluated_at": report["evaluated_at"],
        "runtime": model["runtime"],
        "primary": {
            name: {
                "metric": primary_metric(task),
                "value": primary_value(task, label),
                "higher_is_better": True,
            }
            for name, task in tasks.items()
        },
        "tasks": {name: _compact(task, label) for name, task in tasks.items()},
        # per-item scores of the primary metric: what the promotion guard pairs
        "items": {name: task["items"][label] for name, task in tasks.items() if "items" in task},
        "baseline": {
            "label": baseline,
            "ref": report["models"][baseline]["registry_ref"],
            "diff": diff,
        },
    }


def store_in_registry(
    report: dict[str, Any], registry: Callable[[], Any], progress: Callable[[str], None]
) -> list[str]:
    """Write eval_metrics["suite"] on every registered model of a test-split run (validation
    runs choose hyper-parameters and must not stand in for test results)."""
    if report["split"] != "test":
        progress("validation-split run: nothing stored in the registry")
        return []
    stored = []
    for label, model in report["models"].items():
        ref = model["registry_ref"]
        if ref is None:
            continue
        reg = registry()
        row = reg.get(ref)
        reg.set_eval_metrics(
            ref, {**(row.eval_metrics or {}), "suite": registry_record(report, label)}
        )
        stored.append(ref)
        progress(f"stored suite metrics on {ref}")
    return stored
