"""The embedding engine: the model version now serving, behind the batcher (and the query lane).

It runs without HTTP. It owns which runtime serves: `swap` replaces it in one reference
assignment, so a request that took the runtime with `serving()` (or inside `embed`) finishes
on it while new requests get the new one; none is dropped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from service.bundle import Manifest
from service.inference.batcher import Batcher
from service.inference.config import EngineConfig, LongNotePolicy
from service.inference.runtime import ModelRuntime
from service.inference.tokenize import TokenizedNote
from service.inference.window_encoder import WindowEncoder
from service.inference.windows import Vectors, encode_windows, pool_notes
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedResult:
    vectors: Vectors  # [N, D], unit length
    notes: list[TokenizedNote]
    runtime: ModelRuntime

    @property
    def manifest(self) -> Manifest:
        return self.runtime.manifest


class EmbeddingEngine:
    def __init__(
        self,
        runtime: ModelRuntime,
        batcher: Batcher,
        config: EngineConfig,
        metrics: ServiceMetrics,
    ) -> None:
        self._runtime = runtime
        self._batcher = batcher
        self._config = config
        self._metrics = metrics
        self._lane_busy = False  # touched only on the event loop: one lane request at a time

    def serving(self) -> ModelRuntime:
        """The runtime serving now. Take it once per request when several steps must use the
        same model version (a head with its encoder, a search with its index)."""
        return self._runtime

    def swap(self, runtime: ModelRuntime) -> ModelRuntime:
        """Serve `runtime` from the next request on; returns the one it replaces."""
        previous, self._runtime = self._runtime, runtime  # one reference: atomic for readers
        return previous

    @property
    def manifest(self) -> Manifest:
        return self._runtime.manifest

    async def embed(
        self,
        texts: list[str],
        policy: LongNotePolicy | None = None,
        runtime: ModelRuntime | None = None,
    ) -> EmbedResult:
        """Embed with `runtime` (from `serving()`), or with the runtime serving now."""
        with self._batcher.admit():
            return await self._embed(texts, policy, runtime or self._runtime)

    async def _embed(
        self, texts: list[str], policy: LongNotePolicy | None, runtime: ModelRuntime
    ) -> EmbedResult:
        tokenize_started = time.perf_counter()
        notes = await run_in_threadpool(
            runtime.tokenizer.tokenize, texts, policy or self._config.long_note_policy
        )
        self._metrics.stage_seconds.labels("tokenize").observe(
            time.perf_counter() - tokenize_started
        )
        lane = runtime.lane_encoder
        tokens = sum(note.window_tokens for note in notes)
        if (
            lane is not None
            and not self._lane_busy
            and tokens <= self._config.query_lane_max_tokens
        ):
            # A query or short note: run it now on the lane's own model copy rather than queue
            # it behind bulk batches (the lane is for latency; the queue is for throughput).
            self._lane_busy = True
            try:
                vectors = await run_in_threadpool(self._run_lane, lane, notes, runtime)
            finally:
                self._lane_busy = False
            return EmbedResult(vectors=vectors, notes=notes, runtime=runtime)
        # The deadline bounds the wait for the encoder only: tokenising is the request's own
        # work, which grows with its size and is never held against it.
        vectors = await self._batcher.embed(
            notes,
            runtime.encoder,
            pad_token_id=runtime.tokenizer.pad_token_id,
            deadline_s=self._config.request_deadline_ms / 1000,
        )
        return EmbedResult(vectors=vectors, notes=notes, runtime=runtime)

    def _run_lane(
        self, lane: WindowEncoder, notes: list[TokenizedNote], runtime: ModelRuntime
    ) -> Vectors:
        """A small request, encoded at once on the lane's own model copy: the same windowing,
        padding and pooling as the batcher, so the vectors match."""

        def observe(rows: int, padded_length: int, seconds: float) -> None:
            self._metrics.stage_seconds.labels("query_lane").observe(seconds)
            self._metrics.batch_windows.observe(rows)
            self._metrics.batch_tokens.observe(rows * padded_length)

        (window_vectors,) = encode_windows(
            lane,
            [notes],
            pad_token_id=runtime.tokenizer.pad_token_id,
            max_batch_tokens=self._config.max_batch_tokens,
            on_batch=observe,
        )
        return pool_notes(notes, window_vectors)
