"""The model-bundle contract: manifest schema, sha256 verification, loading and writing.

A bundle is the only thing that crosses from training to the service: a directory holding
`model.onnx`, `tokenizer.json`, optional extra files (a classification head) and
`manifest.json`. This module depends on numpy and pydantic only, so training can import it to
write bundles without pulling in the service.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE)
FORMAT_VERSION = 1


class BundleError(Exception):
    """A bundle is missing, incomplete, tampered with or malformed."""


class ExportParity(BaseModel):
    """How closely the ONNX graph reproduces the PyTorch model on real text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    texts: int = Field(ge=1)
    max_abs_diff: float = Field(ge=0)
    min_cosine: float
    tolerance_max_abs_diff: float
    tolerance_min_cosine: float


class PrecisionCheck(BaseModel):
    """How closely a reduced-precision graph (int8, fp16) reproduces its fp32 graph on notes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    precision: Literal["fp16", "int8"]
    notes: int = Field(ge=1)
    min_cosine: float
    mean_cosine: float
    neighbour_k: int = Field(ge=0, description="0 when too few notes to rank neighbours")
    neighbour_overlap: float | None = Field(
        description="mean share of each note's top-k fp32 neighbours the reduced graph keeps"
    )
    tolerance_min_cosine: float
    tolerance_min_overlap: float | None
    measured_on: str | None = Field(
        None, description="the runtime that produced the reduced vectors (None: ONNX Runtime CPU)"
    )


class Quantization(BaseModel):
    """How an int8 graph was made, so the service can pick its runtime and an auditor can redo it.

    `dynamic`: activation scales computed per batch at run time (ONNX Runtime's MatMulInteger).
    `static`: activation scales calibrated on notes and fixed in the graph as QuantizeLinear /
    DequantizeLinear pairs, which OpenVINO runs on the CPU's int8 dot-product units.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scheme: Literal["dynamic", "static"]
    method: str = Field(description="the recipe, e.g. nncf-ptq-smoothquant")
    float_layers: list[str] = Field(
        default_factory=list, description="weight MatMuls left unquantised, by measured sensitivity"
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="the recipe's knobs")
    calibration: dict[str, Any] | None = Field(
        None, description="which notes and windows set the activation scales (no text)"
    )
    sensitivity: list[dict[str, Any]] | None = Field(
        None, description="per-layer quality cost of int8, measured on selection notes"
    )
    fine_tuning: dict[str, Any] | None = Field(
        None, description="quantisation-aware distillation run before calibration, if any"
    )
    downstream: dict[str, Any] | None = Field(
        None, description="paired evaluation-suite comparison with the fp32 bundle"
    )


class Manifest(BaseModel):
    """Everything the service needs to know about a bundle, and its lineage."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    format_version: int = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")
    embedding_dim: int = Field(ge=1)
    pooling: Literal["mean"] = "mean"
    normalized: bool = True
    max_tokens: int = Field(ge=8, description="tokens per window, special tokens included")
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    objective: str = "base"
    base_model: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, str] = Field(description="file name -> sha256 hex digest")
    parity: ExportParity | None = None
    precision_check: PrecisionCheck | None = None
    quantization: Quantization | None = None  # int8 bundles; None on older ones: dynamic
    labels: list[str] | None = None
    data_fingerprint: str | None = None
    training_config: dict[str, Any] | None = None
    eval_metrics: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Bundle(BaseModel):
    """A verified bundle on disk."""

    model_config = ConfigDict(frozen=True)

    path: Path
    manifest: Manifest

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def tokenizer_path(self) -> Path:
        return self.path / TOKENIZER_FILE


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse manifest.json without checking the files (see load_bundle for that)."""
    manifest_path = bundle_dir / MANIFEST
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle directory not found: {bundle_dir}")
    if not manifest_path.is_file():
        raise BundleError(f"bundle {bundle_dir} has no {MANIFEST}")
    try:
        return Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(root)" for e in exc.errors())
        raise BundleError(f"bundle {bundle_dir} has an invalid {MANIFEST} ({fields})") from None


def load_bundle(bundle_dir: Path | str) -> Bundle:
    """Load a bundle and verify every file against the sha256 in its manifest."""
    path = Path(bundle_dir)
    manifest = read_manifest(path)
    if manifest.format_version != FORMAT_VERSION:
        raise BundleError(
            f"bundle {path} has format_version {manifest.format_version}; "
            f"this service reads {FORMAT_VERSION}"
        )
    for required in REQUIRED_FILES:
        if required not in manifest.files:
            raise BundleError(f"bundle {path} is incomplete: manifest does not list {required}")
    for name, expected in manifest.files.items():
        file_path = path / name
        if Path(name).name != name:
            raise BundleError(f"bundle {path} lists a file outside the bundle: {name!r}")
        if not file_path.is_file():
            raise BundleError(f"bundle {path} is incomplete: {name} is missing")
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"bundle {path} failed verification: sha256 of {name} is {actual[:12]}…, "
                f"manifest says {expected[:12]}… (tampered with or partly copied)"
            )
    return Bundle(path=path, manifest=manifest)


def write_manifest(bundle_dir: Path, **fields: Any) -> Manifest:
    """Hash every file in the bundle directory and write manifest.json atomically."""
    files = {
        p.name: sha256_file(p)
        for p in sorted(bundle_dir.iterdir())
        if p.is_file() and p.name != MANIFEST and not p.name.startswith(".")
    }
    manifest = Manifest(files=files, **fields)
    tmp = bundle_dir / f".{MANIFEST}.tmp"
    payload = json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(bundle_dir / MANIFEST)
    return manifest
