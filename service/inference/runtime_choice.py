"""Which runtime and CPU precision serve a bundle when the settings say `auto`.

Chosen by measurement (docs/benchmarks.md): OpenVINO serves the same ONNX graph at 1.1-1.5x the
notes/s of ONNX Runtime fp32 over HTTP (measured on an AVX2 and an AVX-512 CPU), and in bf16,
on CPUs with bf16 units (AVX512-BF16 / AMX), at about 2.5x the fp32 baseline within cosine
0.99997 of fp32. ONNX Runtime stays the runtime for CUDA, for quantised (int8 / fp16) bundles,
which OpenVINO does not serve here, and wherever OpenVINO is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from service.settings import Settings

log = logging.getLogger(__name__)

ConcreteRuntime = Literal["onnxruntime", "openvino"]
ConcretePrecision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: ConcreteRuntime
    precision: ConcretePrecision
    reason: str


def openvino_cpu_capabilities() -> frozenset[str] | None:
    """OpenVINO's CPU capabilities (e.g. FP32, BF16, INT8), or None when it is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    try:
        caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError as exc:  # an installed but unusable OpenVINO: serve on ONNX Runtime
        log.warning("openvino is installed but its CPU plugin failed: %s", exc)
        return None
    return frozenset(str(c) for c in caps)


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose_runtime(
    settings: Settings,
    bundle_precision: str,
    *,
    capabilities: Callable[[], frozenset[str] | None] = openvino_cpu_capabilities,
    cuda_available: Callable[[], bool] = _cuda_available,
) -> RuntimeChoice:
    """Resolve `runtime` / `cpu_precision` (either may be `auto`) for one bundle.

    Explicit settings are honoured (the encoders refuse what cannot run); `auto` never picks
    something that fails to load.
    """
    precision = settings.cpu_precision
    if settings.runtime == "onnxruntime":
        return RuntimeChoice("onnxruntime", "fp32", "runtime onnxruntime set")
    if settings.runtime == "openvino":
        has_bf16 = "BF16" in (capabilities() or frozenset())
        chosen: ConcretePrecision = (
            precision if precision != "auto" else ("bf16" if has_bf16 else "fp32")
        )
        return RuntimeChoice("openvino", chosen, "runtime openvino set")
    # runtime auto
    if settings.device == "cuda" or (settings.device == "auto" and cuda_available()):
        return RuntimeChoice("onnxruntime", "fp32", "CUDA serves through ONNX Runtime")
    if bundle_precision != "fp32":
        return RuntimeChoice(
            "onnxruntime", "fp32", f"{bundle_precision} bundles serve through ONNX Runtime"
        )
    caps = capabilities()
    if caps is None:
        if precision == "bf16":  # asked for explicitly: say why it cannot be had
            return RuntimeChoice("openvino", "bf16", "bf16 asked for (needs openvino)")
        return RuntimeChoice("onnxruntime", "fp32", "openvino not installed")
    if precision == "auto":
        if "BF16" in caps:
            return RuntimeChoice("openvino", "bf16", "openvino, CPU has bf16 units")
        return RuntimeChoice("openvino", "fp32", "openvino, CPU has no bf16 units")
    return RuntimeChoice("openvino", precision, f"openvino, cpu_precision {precision} set")
