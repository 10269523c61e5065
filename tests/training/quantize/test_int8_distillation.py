"""Quantisation-aware distillation before static int8: the student trains under int8
simulation, comes back as a plain encoder, and the bundle is judged against the teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.bundle import load_bundle
from service.inference.tokenize import NoteTokenizer
from tests.conftest import TINY_WINDOW_TOKENS
from tests.support.tiny_model import synthetic_corpus
from training.export import PrecisionGate
from training.quantize.export_int8 import StaticInt8Plan
from training.quantize.qat import FakeQuantLinear, QatConfig, distil_for_int8, insert_fake_quant
from training.quantize.static_int8 import StaticInt8Recipe

pytest.importorskip("openvino")
pytest.importorskip("nncf")


def _windows(bundle: Path, n: int) -> list[np.ndarray]:
    tokenizer = NoteTokenizer(
        bundle / "tokenizer.json",
        max_tokens=TINY_WINDOW_TOKENS,
        overlap_tokens=8,
        max_windows_per_note=64,
    )
    notes = tokenizer.tokenize(synthetic_corpus(n, seed=5), "chunk")
    return [w for note in notes for w in note.windows]


def test_fake_quant_rounds_weights_to_int8_levels() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(8, 4)
    wrapped = FakeQuantLinear(linear, ema_decay=0.9)
    x = torch.randn(3, 8)
    y = wrapped(x)
    assert y.shape == (3, 4)
    # Tolerance: 8-bit rounding of a unit-scale input and weight moves outputs by ~1 %.
    np.testing.assert_allclose(y.detach(), linear(x).detach(), atol=0.05)
    y.sum().backward()  # straight-through: gradients reach the float weight
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0


def test_distilled_student_is_a_plain_encoder(
    tiny_base: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    from transformers import AutoModel

    windows = _windows(tiny_bundle, 40)
    record = distil_for_int8(
        tiny_base, tmp_path / "student", windows, QatConfig(steps=3, batch_windows=4, threads=1)
    )
    assert record["steps"] == 3 and record["fake_quantised_linears"] == 12  # 2 layers x 6
    student = AutoModel.from_pretrained(tmp_path / "student")
    teacher = AutoModel.from_pretrained(tiny_base)
    assert set(student.state_dict()) == set(teacher.state_dict())  # no fake-quant leftovers
    changed = [
        name
        for name, value in student.state_dict().items()
        if not torch.equal(value, teacher.state_dict()[name])
    ]
    assert changed, "three optimiser steps changed no weight"
    probe = AutoModel.from_pretrained(tiny_base)
    assert len(insert_fake_quant(probe, 0.9)) == 12


def test_static_int8_with_distillation_is_judged_against_the_teacher(
    tiny_base: Path, tmp_path: Path
) -> None:
    from training.quantize.pipeline import export_static_int8

    result = export_static_int8(
        tiny_base,
        tmp_path / "int8",
        StaticInt8Plan(
            notes=synthetic_corpus(240, seed=21),
            source="synthetic",
            recipe=StaticInt8Recipe(calibration_windows=20, max_float_layers=0, threads=1),
        ),
        synthetic_corpus(30, seed=22),
        qat=QatConfig(steps=2, batch_windows=4, threads=1),
        gate=PrecisionGate(min_cosine=0.0, min_overlap=0.0),
        name="tiny",
        max_tokens=TINY_WINDOW_TOKENS,
    )
    manifest = load_bundle(result.bundle_dir).manifest
    q = manifest.quantization
    assert q is not None and q.scheme == "static"
    assert q.fine_tuning is not None and q.fine_tuning["steps"] == 2
    assert q.fine_tuning["calibration"]["windows"] > 0
    assert manifest.name == "tiny" and manifest.precision == "int8"
