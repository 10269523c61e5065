"""Suite embeddings are the service runtime's vectors, cached per bundle content, runtime,
long-note policy and text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.bundle import load_bundle
from service.inference.config import RuntimeConfig
from service.inference.runtime import ModelRuntime
from training.evaluate.models import ModelSource
from training.evaluate.suite.embeddings import ModelEmbedder

TEXTS = ["chest pain", "knee fracture " * 40, "chest pain"]  # the second is chunked


def test_vectors_come_from_the_runtime_and_are_cached(tiny_bundle: Path, tmp_path: Path) -> None:
    source = ModelSource("tiny", tiny_bundle)
    first = ModelEmbedder(
        source, tmp_path, policy="chunk", threads=1, runtime_setting="onnxruntime"
    )
    x = first.embed(TEXTS)
    assert first.embedded == 2 and first.runtime_label == "onnxruntime-fp32"  # duplicates once
    config = RuntimeConfig(runtime="onnxruntime", intra_op_threads=1)
    runtime = ModelRuntime.load(load_bundle(tiny_bundle), config)
    expected = runtime.embed_sync(TEXTS, "chunk", 8192)
    np.testing.assert_allclose(x, expected, atol=1e-5)  # fp32 kernel noise only
    again = ModelEmbedder(
        source, tmp_path, policy="chunk", threads=1, runtime_setting="onnxruntime"
    )
    np.testing.assert_array_equal(again.embed(TEXTS[::-1]), x[::-1])
    assert again.embedded == 0 and again.providers == ()  # nothing loaded: all from the cache
    truncated = ModelEmbedder(
        source, tmp_path, policy="truncate", threads=1, runtime_setting="onnxruntime"
    )
    y = truncated.embed(TEXTS)
    assert truncated.embedded == 2 and not np.allclose(x[1], y[1], atol=1e-4)
    assert len(list(tmp_path.glob("vectors-*.npz"))) == 2
