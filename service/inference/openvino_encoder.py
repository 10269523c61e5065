"""OpenVINO runtime for a bundle's ONNX graph on CPU: fp32, the CPU's bf16 units, or a static
int8 graph on its int8 units."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from service.bundle import Bundle
from service.inference.config import CpuPrecision
from service.inference.runtime_choice import ConcretePrecision, bundle_kind

log = logging.getLogger(__name__)


class RuntimeUnavailable(RuntimeError):
    """The runtime asked for is not installed, or cannot run this bundle."""


class OpenVinoEncoder:
    """One compiled model and one infer request; called from the batcher's inference thread only.

    OpenVINO reads `model.onnx` directly, so a bundle needs no second format. With precision
    bf16 the matrix multiplications run on AVX512-BF16 / AMX while inputs, outputs and
    accumulation stay fp32 (cosine to fp32 above 0.9999 on MTSamples, docs/benchmarks.md). With
    precision int8 (static int8 bundles only) the calibrated QuantizeLinear / DequantizeLinear
    pairs become int8 MatMuls, and the graph's float parts run in bf16 where the CPU has bf16
    units (unless `float_precision` is fp32), else fp32.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        precision: ConcretePrecision,
        threads: int,
        float_precision: CpuPrecision = "auto",
    ) -> None:
        try:
            import openvino
        except ImportError as exc:
            raise RuntimeUnavailable(
                "runtime 'openvino' asked for but the openvino package is not installed "
                "(pip install 'notespace[openvino]')"
            ) from exc
        kind = bundle_kind(bundle.manifest)
        if kind not in ("fp32", "int8-static") or (precision == "int8") != (kind == "int8-static"):
            raise RuntimeUnavailable(
                f"runtime 'openvino' serves fp32 and static int8 bundles; this one is {kind} "
                f"and {precision} was asked for (serve it with runtime 'onnxruntime')"
            )
        core = openvino.Core()
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "bf16" and "BF16" not in caps:
            raise RuntimeUnavailable("cpu_precision 'bf16' asked for but this CPU has no bf16")
        if precision == "int8" and float_precision == "bf16" and "BF16" not in caps:
            raise RuntimeUnavailable("cpu_precision 'bf16' asked for but this CPU has no bf16")
        bf16 = precision == "bf16" or (
            precision == "int8" and float_precision != "fp32" and "BF16" in caps
        )
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32",
            "INFERENCE_NUM_THREADS": threads,
            # One request at a time from one thread: all cores on it, no throughput streams.
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self._compiled = core.compile_model(str(bundle.model_path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.dim = bundle.manifest.embedding_dim
        self.precision = f"int8-{'bf16' if bf16 else 'fp32'}" if precision == "int8" else precision
        log.info("openvino model ready: CPU, precision=%s, threads=%d", self.precision, threads)

    @property
    def active_providers(self) -> list[str]:
        return [f"OpenVINO-CPU-{self.precision}"]

    def encode(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        outputs = self._request.infer({"input_ids": input_ids, "attention_mask": attention_mask})
        # The request reuses its output buffer on the next call: copy the vectors out.
        return np.array(outputs[0], dtype=np.float32, copy=True)
