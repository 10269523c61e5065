"""Export: any local HF encoder → verified bundle; refusals leave nothing half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from training.export import ExportError, export_bundle
from training.export import bundle_writer as export_module


def test_graph_has_dynamic_batch_and_sequence(tiny_bundle: Path) -> None:
    session = ort.InferenceSession(str(tiny_bundle / "model.onnx"))
    for batch, seq in [(1, 3), (5, 32), (2, 17)]:
        ids = np.full((batch, seq), 7, dtype=np.int64)
        mask = np.ones_like(ids)
        (out,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
        assert out.shape == (batch, 32)
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_parity_failure_refuses_and_leaves_nothing(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "PARITY_MIN_COSINE", 1.5)  # unreachable (where checked)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="parity check failed"):
        export_bundle(tiny_base, out, max_tokens=32)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_not_an_encoder_directory(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    with pytest.raises(ExportError, match="not a Hugging Face model directory"):
        export_bundle(tmp_path / "base", tmp_path / "out")
    with pytest.raises(ExportError, match="not found"):
        export_bundle(tmp_path / "missing", tmp_path / "out")


def test_refuses_to_overwrite_without_flag(tiny_base: Path, tiny_bundle: Path) -> None:
    with pytest.raises(ExportError, match="not empty"):
        export_bundle(tiny_base, tiny_bundle)
