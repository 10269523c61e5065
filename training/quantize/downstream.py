"""The downstream part of the int8 gate: frozen few-shot macro-F1 of the int8 bundle within half
a point of its fp32 bundle on every classification task of an evaluation suite (paired: the same
few-shot draws, the same test notes), recorded in the int8 bundle's manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from service.bundle import MANIFEST, load_bundle, write_manifest

DEFAULT_SUITE = "int8-gate"
MARGIN = 0.005  # absolute macro-F1: half a point


def downstream_check(
    report: dict[str, Any], baseline: str, candidate: str, margin: float = MARGIN
) -> dict[str, Any]:
    """Per classification task, the candidate's primary metric minus the baseline's (with the
    suite's paired bootstrap interval); passed when no task falls short by more than `margin`."""
    from training.evaluate.suite.summary import primary_diff, primary_value

    tasks = []
    for name, task in report["tasks"].items():
        if task["kind"] != "classification":
            continue
        fp32 = primary_value(task, baseline)
        int8 = primary_value(task, candidate)
        cell = primary_diff(task, candidate) or {}
        tasks.append(
            {
                "task": name,
                "metric": task["primary_metric"],
                "fp32": fp32,
                "int8": int8,
                "difference": int8 - fp32,
                "ci": [cell.get("ci_low"), cell.get("ci_high")] if cell else None,
                "within_margin": int8 - fp32 >= -margin,
            }
        )
    if not tasks:
        raise ValueError("the suite report has no classification task to gate on")
    return {
        "suite": report["suite"]["name"],
        "suite_fingerprint": report["suite"]["fingerprint"],
        "split": report.get("split", "test"),
        "margin": margin,
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
