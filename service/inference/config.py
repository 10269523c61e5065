"""What inference is told: small frozen configs, so nothing below the app needs `Settings`.

The service builds them from its settings (service.orchestration.configs); offline callers
(evaluation, quantisation, benchmarks) build them directly, with no environment involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

LongNotePolicy = Literal["chunk", "truncate", "reject"]
Device = Literal["cpu", "cuda", "auto"]
# Which runtime executes the bundle's ONNX graph: ONNX Runtime (always installed) or the
# OpenVINO runtime (extra `notespace[openvino]`, CPU only). `auto` takes the faster one that
# can serve the bundle on this machine (service/inference/runtime_choice.py).
Runtime = Literal["auto", "onnxruntime", "openvino"]
# Arithmetic precision on CPU. bf16 runs fp32 bundles on the CPU's bf16 units (AVX512-BF16 /
# AMX) through OpenVINO; ONNX Runtime has no bf16 CPU kernels, so bf16 needs OpenVINO. `auto`
# takes bf16 exactly when OpenVINO serves and the CPU has bf16 units.
CpuPrecision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class WindowConfig:
    """How a long note becomes model windows (the window length is the bundle's)."""

    overlap_tokens: int = 32
    max_windows_per_note: int = 256


@dataclass(frozen=True)
class RuntimeConfig:
    """How one model version is loaded: runtime, device, threads, windowing, query lane."""

    device: Device = "cpu"
    intra_op_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    runtime: Runtime = "auto"
    cpu_precision: CpuPrecision = "auto"
    ort_cpu_arena: bool = True
    ort_thread_spinning: bool = True
    # Load a second, single-thread model copy for the query lane (the engine decides which
    # requests use it).
    query_lane: bool = False
    # Run a short and a full-length batch after loading (the service does; offline jobs need not).
    warmup: bool = False
    window: WindowConfig = field(default_factory=WindowConfig)


@dataclass(frozen=True)
class BatcherConfig:
    """The token-budget batcher and its admission limits (service.inference.admission)."""

    max_batch_tokens: int = 16384
    max_queue_tokens: int = 131_072
    retry_after_s: int = 1
    # Tokens one request may hold; never more than the queue (None: the queue's size).
    max_request_tokens: int | None = None
    # Requests admitted but not finished (tokenising, queued, running); beyond it, 503 at once.
    max_pending_requests: int = 128

    @property
    def request_token_limit(self) -> int:
        return min(self.max_request_tokens or self.max_queue_tokens, self.max_queue_tokens)


@dataclass(frozen=True)
class EngineConfig:
    """Per-request choices of the embedding engine."""

    long_note_policy: LongNotePolicy = "chunk"
    request_deadline_ms: int = 30_000
    # A request of at most this many window tokens runs at once on the query lane's model copy
    # (0: no lane).
    query_lane_max_tokens: int = 512
    max_batch_tokens: int = 16384
