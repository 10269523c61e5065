"""Reduced-precision bundles (int8 for CPUs, fp16 for GPUs), derived from the checked fp32 graph
and refused when they do not reproduce its vectors and neighbours on real notes within their
gate."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from service.bundle import MODEL_FILE, TOKENIZER_FILE
from training.export.errors import ExportError

if TYPE_CHECKING:
    from training.quantize.export_int8 import StaticInt8Plan

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
# Reduced-precision gates, against the fp32 graph on the quality notes (real notes, not the
# parity texts): every vector's cosine, and the mean overlap of each note's top-k neighbours.
INT8_MIN_COSINE = 0.98
FP16_MIN_COSINE = 0.999
MIN_NEIGHBOUR_OVERLAP = 0.95
NEIGHBOUR_K = 10
MIN_QUALITY_NOTES = 2 * NEIGHBOUR_K


@dataclass(frozen=True)
class PrecisionGate:
    """The thresholds a reduced-precision bundle must meet (defaults: module constants)."""

    min_cosine: float | None = None  # None: INT8_MIN_COSINE or FP16_MIN_COSINE
    min_overlap: float = MIN_NEIGHBOUR_OVERLAP
    k: int = NEIGHBOUR_K


def read_quality_notes(path: Path, limit: int = 500) -> list[str]:
    """Distinct non-empty notes from a CSV (`text` or `transcription` column), a JSONL file
    (`text` field) or a text file (one note per line), in file order, at most `limit`."""
    import csv

    if not path.is_file():
        raise ExportError(f"quality notes file not found: {path}")
    texts: list[str] = []
    if path.suffix == ".csv":
        csv.field_size_limit(10**8)
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            column = next(
                (c for c in ("text", "transcription") if c in (reader.fieldnames or [])), None
            )
            if column is None:
                raise ExportError(f"{path} has no 'text' or 'transcription' column")
            texts = [row[column] or "" for row in reader]
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            texts = [str(json.loads(line).get("text") or "") for line in handle if line.strip()]
    else:
        texts = path.read_text(encoding="utf-8").splitlines()
    distinct = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    return distinct[:limit]


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8: weights per output channel, activations per tensor at run time.

    Only MatMuls with constant weights are quantised (the attention score products stay fp32),
    and not the feed-forward down-projections (weights taller than wide): their inputs, after
    GELU, carry the outliers that per-tensor activation scales lose. On MTSamples all MatMuls
    in int8 gave top-10 neighbour overlap 0.92, per-tensor weights cosine 0.90, static
    (calibrated) activations cosine 0.73 (docs/benchmarks.md).
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src)).graph
    weights = {init.name: numpy_helper.to_array(init).shape for init in graph.initializer}
    down_projections = [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and len(shape := weights.get(node.input[1], ())) == 2
        and shape[0] > shape[1]
    ]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=down_projections,
        extra_options={"MatMulConstBOnly": True},
    )


def convert_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and arithmetic for GPUs; inputs and output stay int64 / fp32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def onnx_vectors(
    model_file: Path, tokenizer: Any, texts: list[str], max_tokens: int, batch_size: int = 16
) -> npt.NDArray[np.float32]:
    """Unit vectors [N, D] from an ONNX graph on the CPU provider (first window of each text)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_tokens,
            return_tensors="np",
        )
        feeds = {k: np.asarray(batch[k], dtype=np.int64) for k in ("input_ids", "attention_mask")}
        out.append(np.asarray(session.run(None, feeds)[0], dtype=np.float32))
    return np.concatenate(out)


def neighbour_overlap(
    reference: npt.NDArray[np.float32], candidate: npt.NDArray[np.float32], k: int
) -> float:
    """Mean share of each note's top-k reference neighbours (itself excluded) that the
    candidate vectors also rank in their top k."""
    overlaps = []
    for vectors in (reference, candidate):
        scores = vectors @ vectors.T  # [N, N], unit vectors: cosine
        np.fill_diagonal(scores, -np.inf)
        overlaps.append(np.argsort(-scores, axis=1, kind="stable")[:, :k])  # [N, k]
    ref_top, cand_top = overlaps
    shared = [
        len(set(r) & set(c)) for r, c in zip(ref_top.tolist(), cand_top.tolist(), strict=True)
    ]
    return float(np.mean(shared)) / k


def check_precision(
    fp32_file: Path,
    reduced_file: Path,
    precision: Literal["fp16", "int8"],
    tokenizer: Any,
    texts: list[str],
    max_tokens: int,
    gate: PrecisionGate,
) -> dict[str, Any]:
    """Compare a reduced-precision graph with its fp32 graph on `texts`; the manifest's figures."""
    reference = onnx_vectors(fp32_file, tokenizer, texts, max_tokens)
    candidate = onnx_vectors(reduced_file, tokenizer, texts, max_tokens)
    cosines = (reference * candidate).sum(axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    )
    k = min(gate.k, len(texts) - 1)
    min_cosine = gate.min_cosine
    if min_cosine is None:
        min_cosine = INT8_MIN_COSINE if precision == "int8" else FP16_MIN_COSINE
    return {
        "precision": precision,
        "notes": len(texts),
        "min_cosine": float(cosines.min()),
        "mean_cosine": float(cosines.mean()),
        "neighbour_k": k,
        "neighbour_overlap": neighbour_overlap(reference, candidate, k) if k > 0 else None,
        "tolerance_min_cosine": min_cosine,
        "tolerance_min_overlap": gate.min_overlap if k > 0 else None,
    }


def reduce_precision(
    staging: Path,
    precision: Literal["fp16", "int8"],
    tokenizer: Any,
    texts: list[str],
    max_tokens: int,
    gate: PrecisionGate,
    int8_plan: StaticInt8Plan | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Replace the staged fp32 graph with its int8 / fp16 form, or raise if it misses its gate;
    returns the manifest's precision check and quantization record."""
    fp32_file = staging.parent / f"{staging.name}.fp32.onnx"
    (staging / MODEL_FILE).rename(fp32_file)
    quantization: dict[str, Any] | None = None
    try:
        if precision == "int8" and int8_plan is not None:
            from training.quantize.calibration import CalibrationError
            from training.quantize.export_int8 import build_static_int8

            try:
                check, quantization = build_static_int8(
                    fp32_file,
                    staging / MODEL_FILE,
                    staging / TOKENIZER_FILE,
                    max_tokens,
                    texts,
                    int8_plan,
                    min_cosine=INT8_MIN_COSINE if gate.min_cosine is None else gate.min_cosine,
                    min_overlap=gate.min_overlap,
                    k=gate.k,
                )
            except CalibrationError as exc:
                raise ExportError(str(exc)) from exc
        elif precision == "int8":
            quantize_int8(fp32_file, staging / MODEL_FILE)
            quantization = {"scheme": "dynamic", "method": "onnxruntime-dynamic-per-channel"}
        else:
            convert_fp16(fp32_file, staging / MODEL_FILE)
        if quantization is None or quantization["scheme"] == "dynamic":
            check = check_precision(
                fp32_file, staging / MODEL_FILE, precision, tokenizer, texts, max_tokens, gate
            )
    finally:
        fp32_file.unlink(missing_ok=True)
    overlap = check["neighbour_overlap"]
    log.info(
        "%s check on %d notes: min cosine %.5f, mean %.5f, top-%d overlap %s",
        precision,
        check["notes"],
        check["min_cosine"],
        check["mean_cosine"],
        check["neighbour_k"],
        "n/a" if overlap is None else f"{overlap:.4f}",
    )
    if check["min_cosine"] < check["tolerance_min_cosine"] or (
        overlap is not None and overlap < gate.min_overlap
    ):
        raise ExportError(
            f"{precision} quality gate failed on {check['notes']} notes: min cosine to fp32 "
            f"{check['min_cosine']:.5f} (limit {check['tolerance_min_cosine']}), top-"
            f"{check['neighbour_k']} neighbour overlap "
            f"{'n/a' if overlap is None else f'{overlap:.4f}'} (limit {gate.min_overlap})"
        )
    return check, quantization
