"""`runtime` / `cpu_precision` auto: the faster runtime that can serve the bundle here, never
one that fails to load; explicit settings are honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.inference.runtime_choice import RuntimeChoice, choose_runtime
from service.orchestration.configs import runtime_config
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
        runtime_config(make_settings(bundle, **settings)),
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


@pytest.mark.parametrize(
    ("caps", "vnni", "expected", "reason_word"),
    [
        (BF16, True, ("openvino", "int8"), "VNNI"),  # AVX512-VNNI / AVX-VNNI / AMX
        (AVX2, False, ("openvino", "int8"), "without VNNI"),  # still the only graph here
        (None, True, ("onnxruntime", "fp32"), "without OpenVINO"),  # ORT runs the QDQ graph
    ],
)
def test_auto_serves_static_int8_on_the_int8_path(
    tiny_bundle: Path,
    caps: frozenset[str] | None,
    vnni: bool,
    expected: tuple[str, str],
    reason_word: str,
) -> None:
    choice = choose_runtime(
        runtime_config(make_settings(tiny_bundle)),
        "int8-static",
        capabilities=lambda: caps,
        cuda_available=lambda: False,
        int8_dot_product=lambda: vnni,
    )
    assert (choice.runtime, choice.precision) == expected
    assert reason_word in choice.reason


def test_static_int8_keeps_explicit_settings_and_cuda(tiny_bundle: Path) -> None:
    def choose(**settings: str) -> RuntimeChoice:
        return choose_runtime(
            runtime_config(make_settings(tiny_bundle, **settings)),
            "int8-static",
            capabilities=lambda: BF16,
            cuda_available=lambda: True,
            int8_dot_product=lambda: True,
        )

    assert choose(runtime="onnxruntime").runtime == "onnxruntime"
    assert (choose(runtime="openvino").runtime, choose(runtime="openvino").precision) == (
        "openvino",
        "int8",
    )
    # CUDA goes to ONNX Runtime, whose encoder then refuses an int8 bundle on the GPU.
    assert choose(device="auto").runtime == "onnxruntime"
    # A dynamic int8 bundle (MatMulInteger) stays on ONNX Runtime, as before.
    dynamic = choose_runtime(
        runtime_config(make_settings(tiny_bundle)),
        "int8",
        capabilities=lambda: BF16,
        cuda_available=lambda: False,
        int8_dot_product=lambda: True,
    )
    assert dynamic.runtime == "onnxruntime"


def test_bundle_kind_reads_the_quantization_record(tiny_bundle: Path) -> None:
    from service.bundle import Quantization, load_bundle
    from service.inference.runtime_choice import bundle_kind

    manifest = load_bundle(tiny_bundle).manifest
    assert bundle_kind(manifest) == "fp32"
    int8 = manifest.model_copy(update={"precision": "int8"})
    assert bundle_kind(int8) == "int8"  # older int8 bundles carry no record: dynamic
    static = int8.model_copy(
        update={"quantization": Quantization(scheme="static", method="nncf-ptq-smoothquant")}
    )
    assert bundle_kind(static) == "int8-static"
