"""Static int8 from a base encoder in one call: optional quantisation-aware distillation, then
calibration, float-layer selection and the gate against the base's own fp32 graph."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.inference.tokenize import NoteTokenizer
from training.export import ExportResult, PrecisionGate, default_base_dir, export_bundle
from training.quantize.calibration import calibration_windows, split_notes
from training.quantize.export_int8 import StaticInt8Plan

log = logging.getLogger(__name__)

QAT_WINDOWS = 4000  # distinct training windows the distillation samples its batches from


def export_static_int8(
    base: Path | None,
    out: Path,
    plan: StaticInt8Plan,
    gate_texts: list[str],
    *,
    qat: Any = None,  # a training.quantize.qat.QatConfig, or None for post-training only
    gate: PrecisionGate | None = None,
    **export_kwargs: Any,
) -> ExportResult:
    """Export `base` as a static int8 bundle at `out`. With `qat`, a student distilled under
    int8 simulation on the plan's calibration notes is what gets quantised, and the base's fp32
    graph stays the reference for layer selection and for the gate."""
    if qat is None:
        return export_bundle(
            base,
            out,
            precision="int8",
            quality_texts=gate_texts,
            precision_gate=gate,
            int8_plan=plan,
            **export_kwargs,
        )
    from training.quantize.qat import distil_for_int8

    base_dir = base or default_base_dir()
    with tempfile.TemporaryDirectory(prefix="notespace-qat-") as work:
        teacher = export_bundle(base, Path(work) / "teacher", **_fp32_kwargs(export_kwargs))
        tokenizer = NoteTokenizer(
            teacher.bundle_dir / "tokenizer.json",
            max_tokens=teacher.manifest.max_tokens,
            overlap_tokens=32,
            max_windows_per_note=256,
        )
        # The same split the calibration step makes: the student never sees selection or
        # gate notes.
        split = split_notes(plan.notes, held_out=gate_texts)
        windows = calibration_windows(tokenizer, split.calibration, QAT_WINDOWS, plan.source)
        student = Path(work) / "student"
        record = distil_for_int8(base_dir, student, windows.windows, qat)
        record["calibration"] = windows.record
        log.info("qat: 1 - cos %.5f -> %.5f", record["loss_first_20"], record["loss_last_20"])
        kwargs = dict(export_kwargs)
        if base is None:  # keep the default model's name and lineage on the student
            kwargs.setdefault("name", teacher.manifest.name)
            kwargs.setdefault("lineage", {"base_model": teacher.manifest.base_model})
        return export_bundle(
            student,
            out,
            precision="int8",
            quality_texts=gate_texts,
            precision_gate=gate,
            int8_plan=replace(
                plan, reference_model=teacher.bundle_dir / "model.onnx", fine_tuning=record
            ),
            **kwargs,
        )


def _fp32_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    keep = ("max_tokens", "parity_texts")
    return {k: v for k, v in kwargs.items() if k in keep}
