"""The optional OpenVINO runtime serves a bundle's ONNX graph with ORT's vectors (fp32) or
within bf16 tolerance; bad combinations are refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from service.bundle import load_bundle
from service.inference.runtime import ModelRuntime
from tests.conftest import make_settings, runtime_config_of
from tests.support.tiny_model import synthetic_corpus

TEXTS = synthetic_corpus(12, seed=3)


def _vectors(bundle: Path, **settings: str) -> np.ndarray:
    runtime = ModelRuntime.load(
        load_bundle(bundle), runtime_config_of(make_settings(bundle, **settings))
    )
    runtime.warm_up()
    return runtime.embed_sync(TEXTS, "chunk", max_batch_tokens=4096)


def test_bf16_needs_openvino(tiny_bundle: Path) -> None:
    with pytest.raises(ValidationError, match="bf16 needs runtime openvino"):
        make_settings(tiny_bundle, runtime="onnxruntime", cpu_precision="bf16")


def test_openvino_matches_onnxruntime(tiny_bundle: Path) -> None:
    openvino = pytest.importorskip("openvino")
    reference = _vectors(tiny_bundle, runtime="onnxruntime")
    fp32 = _vectors(tiny_bundle, runtime="openvino", cpu_precision="fp32")
    np.testing.assert_allclose(fp32, reference, atol=1e-4)  # fp32 kernels differ only in order
    if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    bf16 = _vectors(tiny_bundle, runtime="openvino", cpu_precision="bf16")
    # bf16 keeps 8 mantissa bits; the real model's figure (≥ 0.9999) is in benchmarks.md.
    assert ((bf16 * reference).sum(axis=1) > 0.99).all()
