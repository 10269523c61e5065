"""ONNX Runtime session for a bundle's graph: padded token windows in, unit vectors out."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from service.bundle import Bundle
from service.settings import Device

log = logging.getLogger(__name__)


class WindowEncoder(Protocol):
    """The seam the batcher runs: token ids + mask [B, T] → vectors [B, D]."""

    def encode(
        self, input_ids: npt.NDArray[np.int64], attention_mask: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float32]: ...


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

    def __init__(self, bundle: Bundle, *, device: Device, intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One inference thread drives the session; intra-op threads use the cores, and no
        # inter-op pool competes with them.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.providers = choose_providers(device)
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
