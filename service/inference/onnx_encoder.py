"""ONNX Runtime session for a bundle's graph: padded token windows in, unit vectors out."""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.bundle import Bundle
from service.inference.config import Device

log = logging.getLogger(__name__)


class DeviceUnavailable(RuntimeError):
    """CUDA was asked for and this onnxruntime build or machine has none."""


def choose_providers(device: Device) -> list[str]:
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise DeviceUnavailable(
            "device 'cuda' asked for but onnxruntime offers only "
            f"{', '.join(available)} (install onnxruntime-gpu and check the driver)"
        )
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxEncoder:
    """One ORT session; called from the batcher's single inference thread only."""

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: Device,
        intra_op_threads: int,
        cpu_arena: bool = True,
        thread_spinning: bool = True,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One inference thread drives the session; intra-op threads use the cores, and no
        # inter-op pool competes with them.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.enable_cpu_mem_arena = cpu_arena
        if not thread_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = choose_providers(device)
        precision = bundle.manifest.precision
        if precision == "int8" and self.providers[0] == "CUDAExecutionProvider":
            # Dynamic int8 MatMuls run on the CPU provider only: on a GPU they would bounce
            # every layer between devices. GPUs get fp16 bundles instead.
            raise DeviceUnavailable(
                "an int8 bundle is for CPU serving; on CUDA serve an fp16 or fp32 bundle"
            )
        if precision == "fp16" and self.providers[0] == "CPUExecutionProvider":
            log.warning("fp16 bundle on the CPU provider: expect it to be slower than fp32")
        self._session = ort.InferenceSession(
            str(bundle.model_path), sess_options=options, providers=self.providers
        )
        self.dim = bundle.manifest.embedding_dim
        log.info("onnx session ready: providers=%s", ",".join(self._session.get_providers()))

    @property
    def active_providers(self) -> list[str]:
        return list(self._session.get_providers())

    def encode(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]:
        (vectors,) = self._session.run(
            ["sentence_embedding"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        return np.asarray(vectors, dtype=np.float32)
