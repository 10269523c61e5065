"""The int8 gate's downstream part: paired differences against fp32 on every task, refused only
when an interval lies wholly below -margin, recorded in the int8 manifest before registration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from service.bundle import MANIFEST, load_bundle, write_manifest
from training.quantize.downstream import downstream_check, record_downstream


def _task(
    fp32: float, int8: float, kind: str = "classification", half_width: float = 0.001
) -> dict[str, Any]:
    def model(f1: float) -> dict[str, Any]:
        return {"frozen_lr": {"16": {"macro_f1": {"mean": f1}}}, "metrics": {"ndcg@10": f1}}

    d = int8 - fp32
    diff = {"mean": d, "ci_low": d - half_width, "ci_high": d + half_width, "draws": 20}
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


def test_refused_only_when_the_interval_lies_below_the_margin() -> None:
    inside = downstream_check(_report(a=_task(0.600, 0.5955), b=_task(0.5, 0.51)), "fp32", "int8")
    assert inside["passed"] and [t["within_margin"] for t in inside["tasks"]] == [True, True]
    assert inside["tasks"][0]["difference"] == pytest.approx(-0.0045)
    assert inside["tasks"][0]["ci"] == pytest.approx([-0.0055, -0.0035])
    assert [t["verdict"] for t in inside["tasks"]] == ["level", "better"]
    outside = downstream_check(_report(a=_task(0.600, 0.592), b=_task(0.5, 0.6)), "fp32", "int8")
    assert not outside["passed"]  # one task surely short by more than half a point
    assert [t["verdict"] for t in outside["tasks"]] == ["worse", "better"]
    # The same point shortfall inside a wide interval is noise, not evidence: passed.
    noisy = downstream_check(_report(a=_task(0.600, 0.590, half_width=0.02)), "fp32", "int8")
    assert noisy["passed"] and noisy["tasks"][0]["verdict"] == "level"
    # Retrieval tasks are judged the same way.
    retrieval = downstream_check(_report(r=_task(0.9, 0.85, kind="retrieval")), "fp32", "int8")
    assert not retrieval["passed"] and retrieval["tasks"][0]["metric"] == "ndcg@10"
    with pytest.raises(ValueError, match="no task"):
        downstream_check(_report(), "fp32", "int8")


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
