"""The static int8 step of `notespace export --precision int8 --calibration-notes ...`: calibrate,
choose the float layers, quantise, and measure the gate on held-out notes as served here."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.inference.tokenize import NoteTokenizer
from training.quantize.calibration import (
    CalibrationError,
    calibration_windows,
    first_windows,
    split_notes,
)
from training.quantize.static_int8 import METHOD, StaticInt8Recipe, quantize_static, score_vectors
from training.quantize.vectors import GraphRunner, served_runtime

log = logging.getLogger(__name__)

MIN_SELECTION_NOTES = 50


@dataclass(frozen=True)
class StaticInt8Plan:
    """The trust's notes for calibration and layer selection (held-out ids already excluded:
    calibration.read_notes), where they came from, and the recipe."""

    notes: list[str]
    source: str  # for the manifest, e.g. "mtsamples.csv minus mtsamples-test-ids.txt"
    recipe: StaticInt8Recipe = field(default_factory=StaticInt8Recipe)
    runtime: str | None = None  # None: what the service would use on this machine
    # The fp32 graph the int8 one must reproduce, when the graph being quantised is not it:
    # after quantisation-aware distillation the student is quantised, the teacher is the judge.
    reference_model: Path | None = None
    fine_tuning: dict[str, Any] | None = None  # the distillation run's record, for the manifest


def build_static_int8(
    fp32_file: Path,
    out_file: Path,
    tokenizer_file: Path,
    max_tokens: int,
    gate_texts: list[str],
    plan: StaticInt8Plan,
    *,
    min_cosine: float,
    min_overlap: float,
    k: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the int8 graph; return (the precision check on `gate_texts`, the quantization
    record), both for the manifest. The gate's notes never enter calibration or selection."""
    tokenizer = NoteTokenizer(
        tokenizer_file, max_tokens=max_tokens, overlap_tokens=32, max_windows_per_note=256
    )
    split = split_notes(plan.notes, held_out=gate_texts)
    if len(split.selection) < MIN_SELECTION_NOTES or not split.calibration:
        raise CalibrationError(
            f"{len(plan.notes)} calibration notes ({len(split.selection)} for layer selection "
            f"after removing the gate's notes): give at least {4 * MIN_SELECTION_NOTES}"
        )
    runtime = plan.runtime or served_runtime()
    recipe = plan.recipe
    calibration = calibration_windows(
        tokenizer, split.calibration, recipe.calibration_windows, plan.source
    )
    selection = first_windows(tokenizer, split.selection[: recipe.max_selection_notes])
    log.info(
        "int8 (%s): %d calibration windows from %d notes, %d selection notes, runtime %s",
        METHOD,
        len(calibration.windows),
        calibration.record["notes"],
        len(selection),
        runtime,
    )
    reference_file = plan.reference_model or fp32_file
    chosen = quantize_static(
        fp32_file,
        out_file,
        reference=reference_file,
        calibration=calibration.windows,
        selection=selection,
        recipe=recipe,
        min_cosine=min_cosine,
        min_overlap=min_overlap,
        k=k,
        runtime=runtime,
    )
    gate_windows = first_windows(tokenizer, gate_texts)
    reference_runtime = "openvino-cpu-f32" if runtime.startswith("openvino") else runtime
    reference = GraphRunner(reference_file, reference_runtime, recipe.threads).vectors(gate_windows)
    candidate = GraphRunner(out_file, runtime, recipe.threads).vectors(gate_windows)
    k_gate = min(k, len(gate_texts) - 1)
    figures = score_vectors(reference, candidate, k_gate)
    log.info(
        "int8 gate on %d held-out notes: min cosine %.5f, top-%d overlap %.4f",
        len(gate_texts),
        figures["min_cosine"],
        k_gate,
        figures["neighbour_overlap"],
    )
    check = {
        "precision": "int8",
        "notes": len(gate_texts),
        "min_cosine": figures["min_cosine"],
        "mean_cosine": figures["mean_cosine"],
        "neighbour_k": k_gate,
        "neighbour_overlap": figures["neighbour_overlap"],
        "tolerance_min_cosine": min_cosine,
        "tolerance_min_overlap": min_overlap,
        "measured_on": runtime,
    }
    quantization = {
        "scheme": "static",
        "method": METHOD,
        "float_layers": chosen.float_layers,
        "settings": {
            **recipe.settings(),
            "selection_notes": len(selection),
            "selection_steps": chosen.steps,
        },
        "calibration": calibration.record,
        "sensitivity": chosen.sensitivity or None,
        "fine_tuning": plan.fine_tuning,
        "downstream": None,
    }
    return check, quantization
