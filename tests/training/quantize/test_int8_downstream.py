"""The int8 gate's downstream part: paired few-shot macro-F1 against fp32, half a point allowed
on every classification task, recorded in the int8 manifest before registration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.bundle import MANIFEST, load_bundle, write_manifest
from training.quantize.downstream import downstream_check, record_downstream


def _task(fp32: float, int8: float, kind: str = "classification") -> dict[str, Any]:
    def model(f1: float) -> dict[str, Any]:
        return {"frozen_lr": {"16": {"macro_f1": {"mean": f1}}}, "metrics": {"ndcg@10": f1}}

    diff = {"mean": int8 - fp32, "ci_low": int8 - fp32 - 0.01, "ci_high": int8 - fp32 + 0.01}
    return {
        "kind": kind,
        "name": "t",
        "primary_metric": "macro_f1@16" if kind == "classification" else "ndcg@10",
        "models": {"fp32": model(fp32), "int8": model(int8)},
        "diffs": {"int8": {"frozen_lr": {"16": diff}, "t": {"ndcg@10": diff}}},
    }


def _report(**tasks: dict[str, Any]) -> dict[str, Any]:
    return {
        "suite": {"name": "int8-gate", "fingerprint": "f" * 64},
        "split": "test",
        "tasks": tasks,
    }


def test_half_a_point_is_allowed_on_every_task_and_no_more() -> None:
    inside = downstream_check(_report(a=_task(0.600, 0.596), b=_task(0.5, 0.51)), "fp32", "int8")
    assert inside["passed"] and [t["within_margin"] for t in inside["tasks"]] == [True, True]
    assert inside["tasks"][0]["difference"] == pytest.approx(-0.004)
    assert inside["tasks"][0]["ci"] == pytest.approx([-0.014, 0.006])
    outside = downstream_check(_report(a=_task(0.600, 0.594), b=_task(0.5, 0.6)), "fp32", "int8")
    assert not outside["passed"]  # one task short by 0.6 points fails the gate
    assert [t["within_margin"] for t in outside["tasks"]] == [False, True]
    # Retrieval tasks are not part of this gate (its figures are cosine and neighbours).
    only = downstream_check(
        _report(a=_task(0.6, 0.6), r=_task(0.9, 0.1, kind="retrieval")), "fp32", "int8"
    )
    assert only["passed"] and [t["task"] for t in only["tasks"]] == ["a"]
    with pytest.raises(ValueError, match="no classification task"):
        downstream_check(_report(r=_task(0.9, 0.9, kind="retrieval")), "fp32", "int8")


def test_the_check_is_recorded_in_the_int8_manifest(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "int8"))
    fields = json.loads((bundle / MANIFEST).read_text())
    for derived in ("files", "format_version"):
        fields.pop(derived)
    write_manifest(
        bundle,
        **{**fields, "precision": "int8", "quantization": {"scheme": "static", "method": "m"}},
    )
    check = downstream_check(_report(a=_task(0.6, 0.6)), "fp32", "int8")
    record_downstream(bundle, check)
    manifest = load_bundle(bundle).manifest  # still verifies: the files are unchanged
    assert manifest.quantization is not None
    assert manifest.quantization.downstream == check
    assert manifest.quantization.method == "m" and manifest.name == "tiny"
    with pytest.raises(ValueError, match="not a quantised bundle"):
        record_downstream(tiny_bundle, check)
