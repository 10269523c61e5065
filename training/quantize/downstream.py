"""The downstream part of the int8 gate: the int8 bundle against its fp32 bundle on every task of
an evaluation suite (paired: the same few-shot draws, the same items), decided by the rule every
model decision uses (service/paired_intervals.py): refused only when some task is worse by more
than the margin with 95 % confidence (the interval of int8 − fp32 lies below −margin). Recorded
in the int8 bundle's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from service.bundle import MANIFEST, load_bundle, write_manifest
from service.paired_intervals import PairedDiff, Verdict

DEFAULT_SUITE = "int8-gate"
MARGIN = 0.005  # absolute: half a macro-F1 point, or 0.005 nDCG@10


def downstream_check(
    report: dict[str, Any], baseline: str, candidate: str, margin: float = MARGIN
) -> dict[str, Any]:
    """Per task, the candidate's primary metric minus the baseline's with the suite's paired
    interval (items and draws resampled); passed unless some task's interval lies wholly below
    −margin. A task that is only level (its interval straddles −margin) passes: the check
    refuses on evidence, never on a point estimate within the noise."""
    from training.evaluate.suite.summary import primary_diff, primary_value

    tasks = []
    for name, task in report["tasks"].items():
        diff = PairedDiff.from_dict(primary_diff(task, candidate))
        verdict = diff.verdict(margin)
        tasks.append(
            {
                "task": name,
                "metric": task["primary_metric"],
                "fp32": primary_value(task, baseline),
                "int8": primary_value(task, candidate),
                "difference": diff.mean,
                "ci": [diff.ci_low, diff.ci_high],
                "draws": diff.draws,
                "verdict": verdict.value,
                "within_margin": verdict is not Verdict.WORSE,
            }
        )
    if not tasks:
        raise ValueError("the suite report has no task to gate on")
    return {
        "suite": report["suite"]["name"],
        "suite_fingerprint": report["suite"]["fingerprint"],
        "split": report.get("split", "test"),
        "margin": margin,
        "rule": "refused when a task's 95 % interval of int8 − fp32 lies below −margin",
        "passed": all(t["within_margin"] for t in tasks),
        "tasks": tasks,
    }


def record_downstream(bundle_dir: Path, check: dict[str, Any]) -> None:
    """Write the check into the bundle's manifest (before it is registered: the registry pins
    the manifest's sha256)."""
    manifest = load_bundle(bundle_dir).manifest
    if manifest.quantization is None:
        raise ValueError(f"{bundle_dir} is not a quantised bundle")
    fields = json.loads((bundle_dir / MANIFEST).read_text())
    for derived in ("files", "format_version"):
        fields.pop(derived, None)
    fields["quantization"] = {**fields["quantization"], "downstream": check}
    write_manifest(bundle_dir, **fields)


def run_downstream_gate(
    int8_dir: Path,
    fp32_dir: Path,
    out_dir: Path,
    *,
    data_root: Path,
    suite: str = DEFAULT_SUITE,
    margin: float = MARGIN,
    threads: int = 2,
    cache_dir: Path | None = None,
    split: Literal["test", "val"] = "test",
) -> dict[str, Any]:
    """Run `suite` on the fp32 and int8 bundles and return the check. On the test split the
    check is the gate and is recorded in the int8 bundle's manifest; on the validation split it
    only informs a choice (e.g. export --selection-margin) and is recorded nowhere, so the test
    split is looked at once, for the bundle finally chosen."""
    from training.evaluate.suite.runner import RunConfig, run_suite

    report = run_suite(
        [f"fp32={fp32_dir}", f"int8={int8_dir}"],
        suite,
        RunConfig(data_root=data_root, threads=threads, cache_dir=cache_dir, plots=False),
        out_dir,
        split=split,
    )
    check = downstream_check(report, "fp32", "int8", margin)
    if split == "test":
        record_downstream(int8_dir, check)
    return check
