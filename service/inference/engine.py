"""The embedding engine: a loaded model (tokenizer + ONNX session) behind the batcher.

It runs without HTTP; the API layer only validates input and shapes responses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.bundle import Bundle, Manifest
from service.errors import Overloaded
from service.inference.batcher import Batcher, Vectors, encode_windows, pool_notes
from service.inference.head import CategoryHead, load_head
from service.inference.onnx_encoder import OnnxEncoder, WindowEncoder
from service.inference.openvino_encoder import OpenVinoEncoder
from service.inference.runtime_choice import RuntimeChoice, bundle_kind, choose_runtime
from service.inference.tokenize import NoteTokenizer, TokenizedNote
from service.metrics import ServiceMetrics
from service.settings import LongNotePolicy, Settings

log = logging.getLogger(__name__)

# Warm-up text: synthetic, so nothing clinical is ever embedded before a real request.
_WARMUP_TEXT = "warm up the encoder with a synthetic sentence of ordinary words. "


@dataclass(frozen=True)
class ModelRuntime:
    """One model version, ready to run: its manifest, tokenizer and encoder belong together."""

    manifest: Manifest
    tokenizer: NoteTokenizer
    encoder: WindowEncoder
    providers: tuple[str, ...] = ()
    version_id: int | None = None  # the registry row this runtime was loaded from
    head: CategoryHead | None = None  # the bundle's optional note-category head
    # A second, single-thread copy of the model for the query lane (None: no lane). Its own
    # compiled model / session: sharing the bulk one would queue a query behind the batch
    # running on it.
    lane_encoder: WindowEncoder | None = None

    def embed_sync(
        self, texts: list[str], policy: LongNotePolicy, max_batch_tokens: int
    ) -> Vectors:
        """Embed without the batcher (offline jobs such as an index rebuild)."""
        notes = self.tokenizer.tokenize(texts, policy)
        (window_vectors,) = encode_windows(
            self.encoder,
            [notes],
            pad_token_id=self.tokenizer.pad_token_id,
            max_batch_tokens=max_batch_tokens,
        )
        return pool_notes(notes, window_vectors)

    @classmethod
    def load(
        cls, bundle: Bundle, settings: Settings, version_id: int | None = None
    ) -> ModelRuntime:
        tokenizer = NoteTokenizer(
            bundle.tokenizer_path,
            max_tokens=bundle.manifest.max_tokens,
            overlap_tokens=settings.window_overlap_tokens,
            max_windows_per_note=settings.max_windows_per_note,
        )
        choice = choose_runtime(settings, bundle_kind(bundle.manifest))
        log.info(
            "%s serves on %s (%s): %s",
            bundle.manifest.ref,
            choice.runtime,
            choice.precision,
            choice.reason,
        )
        encoder = _make_encoder(bundle, settings, choice, settings.intra_op_threads)
        lane = (
            _make_encoder(bundle, settings, choice, 1) if settings.query_lane_max_tokens else None
        )
        return cls(
            manifest=bundle.manifest,
            tokenizer=tokenizer,
            encoder=encoder,
            providers=tuple(encoder.active_providers),
            version_id=version_id,
            head=load_head(bundle),
            lane_encoder=lane,
        )

    def warm_up(self) -> None:
        """Run a short and a full-length batch so first requests do not pay for allocation."""
        encoders = (
            [self.encoder] if self.lane_encoder is None else [self.encoder, self.lane_encoder]
        )
        for repeats in (1, 10_000):
            notes = self.tokenizer.tokenize([_WARMUP_TEXT * repeats], "truncate")
            window = notes[0].windows[0]
            ids = window.reshape(1, -1).repeat(2, axis=0)
            for encoder in encoders:
                encoder.encode(ids, np.ones_like(ids))


def _make_encoder(
    bundle: Bundle, settings: Settings, choice: RuntimeChoice, threads: int
) -> OnnxEncoder | OpenVinoEncoder:
    if choice.runtime == "openvino":
        return OpenVinoEncoder(
            bundle,
            precision=choice.precision,
            threads=threads,
            float_precision=settings.cpu_precision,
        )
    return OnnxEncoder(
        bundle,
        device=settings.device,
        intra_op_threads=threads,
        cpu_arena=settings.ort_cpu_arena,
        thread_spinning=settings.ort_thread_spinning,
    )


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
        self, runtime: ModelRuntime, batcher: Batcher, settings: Settings, metrics: ServiceMetrics
    ) -> None:
        self.runtime = runtime
        self._batcher = batcher
        self._settings = settings
        self._metrics = metrics
        self._pending_requests = 0  # touched only on the event loop
        self._lane_busy = False  # likewise: one query-lane request at a time

    @property
    def manifest(self) -> Manifest:
        return self.runtime.manifest

    @property
    def providers(self) -> list[str]:
        return list(self.runtime.providers)

    async def embed(
        self,
        texts: list[str],
        policy: LongNotePolicy | None = None,
        runtime: ModelRuntime | None = None,
    ) -> EmbedResult:
        self._admit()
        self._pending_requests += 1
        try:
            return await self._embed(texts, policy, runtime or self.runtime)
        finally:
            self._pending_requests -= 1

    def _admit(self) -> None:
        """Shed load before tokenising: a full queue or too many requests in flight get a 503
        at once, instead of waiting for a tokeniser thread and then for the queue."""
        settings = self._settings
        if (
            self._pending_requests >= settings.max_pending_requests
            or self._batcher.queued_tokens >= settings.max_queue_tokens
        ):
            self._metrics.rejected.labels("admission").inc()
            raise Overloaded(
                "service is at capacity; retry shortly", retry_after_s=settings.retry_after_s
            )

    async def _embed(
        self, texts: list[str], policy: LongNotePolicy | None, runtime: ModelRuntime
    ) -> EmbedResult:
        tokenize_started = time.perf_counter()
        notes = await run_in_threadpool(
            runtime.tokenizer.tokenize, texts, policy or self._settings.long_note_policy
        )
        self._metrics.stage_seconds.labels("tokenize").observe(
            time.perf_counter() - tokenize_started
        )
        lane = runtime.lane_encoder
        tokens = sum(note.window_tokens for note in notes)
        if (
            lane is not None
            and not self._lane_busy
            and tokens <= self._settings.query_lane_max_tokens
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
            deadline_s=self._settings.request_deadline_ms / 1000,
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
            max_batch_tokens=self._settings.max_batch_tokens,
            on_batch=observe,
        )
        return pool_notes(notes, window_vectors)
