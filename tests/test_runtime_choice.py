"""`runtime` / `cpu_precision` auto: the faster runtime that can serve the bundle here, never
one that fails to load; explicit settings are honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.inference.runtime_choice import RuntimeChoice, choose_runtime
from tests.conftest import make_settings

AVX2 = frozenset({"FP32", "INT8", "EXPORT_IMPORT"})
BF16 = AVX2 | {"BF16"}


def _choose(
    bundle: Path,
    caps: frozenset[str] | None,
    *,
    precision: str = "fp32",
    cuda: bool = False,
    **settings: str,
) -> RuntimeChoice:
    return choose_runtime(
        make_settings(bundle, **settings),
        precision,
        capabilities=lambda: caps,
        cuda_available=lambda: cuda,
    )


@pytest.mark.parametrize(
    ("caps", "expected"),
    [
        (None, ("onnxruntime", "fp32")),  # the lean image: no openvino
        (AVX2, ("openvino", "fp32")),  # measured 1.1-1.5x ONNX Runtime fp32 over HTTP
        (BF16, ("openvino", "bf16")),  # AVX512-BF16 / AMX units
    ],
)
def test_auto_follows_the_machine(
    tiny_bundle: Path, caps: frozenset[str] | None, expected: tuple[str, str]
) -> None:
    choice = _choose(tiny_bundle, caps)
    assert (choice.runtime, choice.precision) == expected
    assert choice.reason


def test_auto_keeps_onnxruntime_for_cuda_and_quantised_bundles(tiny_bundle: Path) -> None:
    assert _choose(tiny_bundle, BF16, device="cuda").runtime == "onnxruntime"
    assert _choose(tiny_bundle, BF16, device="auto", cuda=True).runtime == "onnxruntime"
    assert _choose(tiny_bundle, BF16, device="auto", cuda=False).runtime == "openvino"
    for precision in ("int8", "fp16"):
        assert _choose(tiny_bundle, BF16, precision=precision).runtime == "onnxruntime"


def test_explicit_settings_win(tiny_bundle: Path) -> None:
    assert _choose(tiny_bundle, BF16, runtime="onnxruntime").runtime == "onnxruntime"
    forced = _choose(tiny_bundle, BF16, runtime="openvino", cpu_precision="fp32")
    assert (forced.runtime, forced.precision) == ("openvino", "fp32")
    assert _choose(tiny_bundle, AVX2, runtime="openvino").precision == "fp32"
    # bf16 asked for on a machine without openvino: chosen anyway, so loading fails loudly
    # (RuntimeUnavailable) instead of quietly serving something slower than was asked for.
    assert _choose(tiny_bundle, None, cpu_precision="bf16").runtime == "openvino"
