"""Reduced-precision bundles: int8 (CPU) and fp16 (GPU) derived from the checked fp32 graph,
refused when they miss their quality gate against fp32; the service serves what is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from service.bundle import load_bundle
from service.inference.runtime import ModelRuntime
from tests.conftest import TINY_WINDOW_TOKENS, make_settings, runtime_config_of
from tests.support.tiny_model import synthetic_corpus
from training.export import (
    ExportError,
    PrecisionGate,
    export_bundle,
    neighbour_overlap,
    read_quality_notes,
)

QUALITY_NOTES = synthetic_corpus(40, seed=7)
LENIENT = PrecisionGate(min_cosine=0.0, min_overlap=0.0)  # the random tiny model is no judge


@pytest.fixture(scope="module")
def int8_bundle(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8") / "tiny-int8"
    export_bundle(
        tiny_base,
        out,
        name="tiny",
        max_tokens=TINY_WINDOW_TOKENS,
        precision="int8",
        quality_texts=QUALITY_NOTES,
        precision_gate=LENIENT,
    )
    return out


def _vectors(bundle: Path, texts: list[str]) -> np.ndarray:
    runtime = ModelRuntime.load(load_bundle(bundle), runtime_config_of(make_settings(bundle)))
    return runtime.embed_sync(texts, "chunk", max_batch_tokens=4096)


def test_int8_bundle_records_its_check_and_serves(int8_bundle: Path, tiny_bundle: Path) -> None:
    manifest = load_bundle(int8_bundle).manifest
    assert manifest.precision == "int8"
    check = manifest.precision_check
    assert check is not None and check.precision == "int8"
    assert check.notes == len(QUALITY_NOTES) and check.neighbour_k == 10
    assert check.neighbour_overlap is not None and 0.0 <= check.neighbour_overlap <= 1.0
    ops = {node.op_type for node in onnx.load(str(int8_bundle / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops  # the int8 kernels are in the graph

    ours = _vectors(int8_bundle, QUALITY_NOTES[:8])
    fp32 = _vectors(tiny_bundle, QUALITY_NOTES[:8])
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # Tolerance: int8 of a random 32-d model; the real model's figures are in benchmarks.md.
    assert ((ours * fp32).sum(axis=1) > 0.9).all()


def test_gate_failure_refuses_and_leaves_nothing(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="int8 quality gate failed"):
        export_bundle(
            tiny_base,
            out,
            max_tokens=TINY_WINDOW_TOKENS,
            precision="int8",
            quality_texts=QUALITY_NOTES,
            precision_gate=PrecisionGate(min_cosine=0.0, min_overlap=1.01),  # unreachable
        )
    assert list(tmp_path.iterdir()) == []


def test_int8_needs_real_notes(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least 20 real notes"):
        export_bundle(tiny_base, tmp_path / "b", precision="int8", quality_texts=["one note"])
    assert list(tmp_path.iterdir()) == []


def test_fp16_bundle_passes_default_gate(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-fp16"
    export_bundle(
        tiny_base, out, max_tokens=TINY_WINDOW_TOKENS, precision="fp16", quality_texts=QUALITY_NOTES
    )
    manifest = load_bundle(out).manifest
    assert manifest.precision == "fp16"
    assert manifest.precision_check is not None
    assert manifest.precision_check.min_cosine >= 0.999  # the default fp16 gate
    model = onnx.load(str(out / "model.onnx"))
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_neighbour_overlap() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert neighbour_overlap(vectors, vectors, 10) == 1.0
    other = rng.normal(size=(30, 8)).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    assert neighbour_overlap(vectors, other, 10) < 0.7  # unrelated vectors share few neighbours


def test_read_quality_notes(tmp_path: Path) -> None:
    csv_file = tmp_path / "notes.csv"
    csv_file.write_text('id,transcription\n1,"first, note"\n2,second\n3,second\n4,\n')
    assert read_quality_notes(csv_file) == ["first, note", "second"]
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t}) for t in ["a", "b", "a"]) + "\n")
    assert read_quality_notes(jsonl) == ["a", "b"]
    txt = tmp_path / "notes.txt"
    txt.write_text("x\n\ny\nz\n")
    assert read_quality_notes(txt, limit=2) == ["x", "y"]
    with pytest.raises(ExportError, match="no 'text' or 'transcription' column"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        read_quality_notes(tmp_path / "bad.csv")
