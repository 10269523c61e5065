"""Export a local Hugging Face encoder to a notespace model bundle (ONNX + tokenizer + manifest).

Mean pooling over the attention mask and L2 normalisation are inside the ONNX graph, so the
service runs exactly one graph per window batch (`onnx_graph`); a reduced-precision bundle is
derived from the checked fp32 graph and gated against it (`precision`); `bundle_writer` puts the
bundle together. The names below are the package's public interface.
"""

from __future__ import annotations

from training.export.bundle_writer import (
    DEFAULT_BASE_ID,
    DEFAULT_BASE_NAME,
    ExportResult,
    default_base_dir,
    export_bundle,
)
from training.export.errors import ExportError
from training.export.onnx_graph import PARITY_MAX_ABS_DIFF, PARITY_MIN_COSINE, check_parity
from training.export.precision import (
    FP16_MIN_COSINE,
    INT8_MIN_COSINE,
    MIN_NEIGHBOUR_OVERLAP,
    MIN_QUALITY_NOTES,
    NEIGHBOUR_K,
    Precision,
    PrecisionGate,
    check_precision,
    convert_fp16,
    neighbour_overlap,
    onnx_vectors,
    quantize_int8,
    read_quality_notes,
)

__all__ = [
    "DEFAULT_BASE_ID",
    "DEFAULT_BASE_NAME",
    "FP16_MIN_COSINE",
    "INT8_MIN_COSINE",
    "MIN_NEIGHBOUR_OVERLAP",
    "MIN_QUALITY_NOTES",
    "NEIGHBOUR_K",
    "PARITY_MAX_ABS_DIFF",
    "PARITY_MIN_COSINE",
    "ExportError",
    "ExportResult",
    "Precision",
    "PrecisionGate",
    "check_parity",
    "check_precision",
    "convert_fp16",
    "default_base_dir",
    "export_bundle",
    "neighbour_overlap",
    "onnx_vectors",
    "quantize_int8",
    "read_quality_notes",
]
