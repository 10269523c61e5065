"""Unit vectors from an ONNX graph, run the way the service would run it on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.quantize.calibration import Window

Vectors = npt.NDArray[np.float32]


def served_runtime() -> str:
    """What the service's `auto` would use for a static int8 graph here: OpenVINO (with bf16
    for the float parts where the CPU has bf16 units), else ONNX Runtime's CPU provider."""
    try:
        import openvino
    except ImportError:
        return "onnxruntime-cpu"
    caps = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "openvino-cpu-bf16" if "BF16" in caps else "openvino-cpu-f32"


class GraphRunner:
    """One compiled graph; `runtime` as named by served_runtime()."""

    def __init__(self, model: Path, runtime: str, threads: int = 2) -> None:
        self.runtime = runtime
        self._run: Any
        if runtime.startswith("openvino"):
            import openvino

            compiled = openvino.Core().compile_model(
                str(model),
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": "bf16" if runtime.endswith("bf16") else "f32",
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "NUM_STREAMS": 1,
                },
            )
            request = compiled.create_infer_request()
            self._run = lambda feeds: np.array(request.infer(feeds)[0], dtype=np.float32)
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._run = lambda feeds: np.asarray(session.run(None, feeds)[0], dtype=np.float32)

    def vectors(self, windows: list[Window], batch: int = 16) -> Vectors:
        """[N, D] vectors of `windows`, batched in length order as the service batches them."""
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]), reverse=True)
        out: Vectors | None = None
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            longest = len(windows[rows[0]])
            ids = np.zeros((len(rows), longest), dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, row in enumerate(rows):
                ids[i, : len(windows[row])] = windows[row]
                mask[i, : len(windows[row])] = 1
            got = self._run({"input_ids": ids, "attention_mask": mask})
            if out is None:
                out = np.empty((len(windows), got.shape[1]), dtype=np.float32)
            out[rows] = got
        assert out is not None, "no windows"
        return out


def cosines(reference: Vectors, candidate: Vectors) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    return np.asarray((reference * candidate).sum(axis=1) / norms, dtype=np.float32)
