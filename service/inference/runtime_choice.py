"""Which runtime and CPU precision serve a bundle when the settings say `auto`.

Chosen by measurement (docs/benchmarks.md): OpenVINO serves the same ONNX graph at 1.1-1.5x the
notes/s of ONNX Runtime fp32 over HTTP (measured on an AVX2 and an AVX-512 CPU), and in bf16,
on CPUs with bf16 units (AVX512-BF16 / AMX), at about 2.5x the fp32 baseline within cosine
0.99997 of fp32. A static int8 bundle (activation scales calibrated into the graph,
training/quantize/) serves through OpenVINO's int8 kernels, which use the CPU's VNNI dot-product
instructions where it has them (AVX512-VNNI / AVX-VNNI / AMX) and AVX2 multiply-adds elsewhere.
ONNX Runtime stays the runtime for CUDA, for dynamic int8 and fp16 bundles, which OpenVINO does
not serve here, and wherever OpenVINO is not installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from service.bundle import Manifest
from service.inference.config import RuntimeConfig

log = logging.getLogger(__name__)

ConcreteRuntime = Literal["onnxruntime", "openvino"]
# int8: the bundle's quantised MatMuls on int8 units, its float parts in bf16 where the CPU
# has bf16 units and cpu_precision allows, else fp32.
ConcretePrecision = Literal["fp32", "bf16", "int8"]
# What a bundle holds, as far as the runtime is concerned (bundle_kind).
BundleKind = Literal["fp32", "fp16", "int8", "int8-static"]
_INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


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


def bundle_kind(manifest: Manifest) -> BundleKind:
    """fp32 / fp16; int8 (dynamic, ONNX Runtime) or int8-static (calibrated QDQ graph)."""
    quantization = manifest.quantization
    if manifest.precision == "int8" and quantization is not None:
        return "int8-static" if quantization.scheme == "static" else "int8"
    return manifest.precision


def cpu_has_int8_dot_product() -> bool:
    """Whether the CPU has VNNI-style int8 dot products (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return bool(_INT8_DOT_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return False


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def choose_runtime(
    config: RuntimeConfig,
    bundle_precision: str,
    *,
    capabilities: Callable[[], frozenset[str] | None] = openvino_cpu_capabilities,
    cuda_available: Callable[[], bool] = _cuda_available,
    int8_dot_product: Callable[[], bool] = cpu_has_int8_dot_product,
) -> RuntimeChoice:
    """Resolve the config's `runtime` / `cpu_precision` (either may be `auto`) for one bundle, whose
    `bundle_precision` is its bundle_kind (a manifest's precision alone reads as dynamic int8).

    Explicit settings are honoured (the encoders refuse what cannot run); `auto` never picks
    something that fails to load.
    """
    precision = config.cpu_precision
    if config.runtime == "onnxruntime":
        return RuntimeChoice("onnxruntime", "fp32", "runtime onnxruntime set")
    if config.runtime == "openvino" and bundle_precision == "int8-static":
        return RuntimeChoice("openvino", "int8", "runtime openvino set, static int8 bundle")
    if config.runtime == "openvino":
        has_bf16 = "BF16" in (capabilities() or frozenset())
        chosen: ConcretePrecision = (
            precision if precision != "auto" else ("bf16" if has_bf16 else "fp32")
        )
        return RuntimeChoice("openvino", chosen, "runtime openvino set")
    # runtime auto
    if config.device == "cuda" or (config.device == "auto" and cuda_available()):
        return RuntimeChoice("onnxruntime", "fp32", "CUDA serves through ONNX Runtime")
    if bundle_precision == "int8-static":
        return _static_int8_choice(capabilities(), int8_dot_product())
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


def _static_int8_choice(caps: frozenset[str] | None, int8_dot: bool) -> RuntimeChoice:
    if caps is None or "INT8" not in caps:
        # ONNX Runtime runs the same QDQ graph (its MLAS int8 kernels, VNNI where present),
        # measured slower than OpenVINO's on the VNNI CPU (docs/benchmarks.md).
        return RuntimeChoice(
            "onnxruntime", "fp32", "static int8 bundle without OpenVINO's int8 kernels"
        )
    if int8_dot:
        return RuntimeChoice("openvino", "int8", "static int8 on the CPU's VNNI int8 dot products")
    # No VNNI (e.g. AVX2 only): OpenVINO still runs the int8 graph, with two-step multiply-adds
    # that keep about half VNNI's int8 rate; the bundle holds no float graph to fall back to.
    return RuntimeChoice(
        "openvino", "int8", "static int8 without VNNI: AVX2 int8 multiply-adds (smaller gain)"
    )
