"""Token-budget batcher: one inference thread fed by a bounded queue measured in tokens.

Requests from many concurrent clients coalesce: each round takes queued jobs in arrival order
up to the token budget, sorts their windows by length (little padding), cuts batches by the
token budget, runs the encoder, and mean-pools window vectors back into note vectors.

Admission (as in text-embeddings-inference: a static size limit, and refusals only for load):
a request over `max_request_tokens` gets 413 saying how to split it, whatever the load. Any
other request is refused only for the work *ahead* of it: 503 when the queue is full or when
that work would not clear within half the request's deadline, with a Retry-After estimated
from the measured throughput, so a retry works once the queue drains. The deadline bounds the
wait for the encoder; once a request's inference starts it runs to the end, however large.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from service.errors import (
    DeadlineExceeded,
    InferenceFailed,
    NotReady,
    Overloaded,
    PayloadTooLarge,
)
from service.inference.onnx_encoder import WindowEncoder
from service.inference.tokenize import TokenizedNote
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


@dataclass(eq=False)
class _Job:
    notes: list[TokenizedNote]
    encoder: WindowEncoder
    pad_token_id: int
    tokens: int
    deadline: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Vectors]
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    started: bool = False  # taken by the inference thread: it will finish (or fail) it


class Batcher:
    def __init__(
        self,
        *,
        max_batch_tokens: int,
        max_queue_tokens: int,
        retry_after_s: int,
        max_request_tokens: int | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.max_queue_tokens = max_queue_tokens
        self.max_request_tokens = min(max_request_tokens or max_queue_tokens, max_queue_tokens)
        self.retry_after_s = retry_after_s
        self._metrics = metrics
        self._queue: deque[_Job] = deque()
        self._queued_tokens = 0
        self._running_tokens = 0  # taken by the inference thread, not finished
        self._cond = threading.Condition()
        self._stopping = False
        # Measured throughput (tokens per second of inference, smoothed): a request that
        # could not be served before its deadline is refused at once rather than queued.
        self._tokens_per_s: float | None = None
        self._thread = threading.Thread(target=self._run, name="notespace-inference", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish queued work, then stop the thread; anything left fails as not ready."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        with self._cond:
            leftovers = list(self._queue)
            self._queue.clear()
            self._queued_tokens = 0
        for job in leftovers:
            self._fail(job, NotReady("service is shutting down", retry_after_s=self.retry_after_s))

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    # -- the async front -----------------------------------------------------------------
    async def embed(
        self,
        notes: list[TokenizedNote],
        encoder: WindowEncoder,
        *,
        pad_token_id: int,
        deadline_s: float,
    ) -> Vectors:
        """Embed tokenised notes; returns one unit vector per note, [N, D]."""
        loop = asyncio.get_running_loop()
        job = _Job(
            notes=notes,
            encoder=encoder,
            pad_token_id=pad_token_id,
            tokens=sum(n.window_tokens for n in notes),
            deadline=time.monotonic() + deadline_s,
            loop=loop,
            future=loop.create_future(),
        )
        self._submit(job)
        try:
            done, _ = await asyncio.wait({job.future}, timeout=deadline_s)
            if not done and self._withdraw(job):
                self._count_rejected("deadline")
                raise DeadlineExceeded(
                    f"request waited past its deadline of {deadline_s:g} s for the encoder",
                    retry_after_s=self.retry_after_s,
                )
            # Done, or already running: a started request is finished, not abandoned.
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            self._count_rejected("cancelled")
            raise

    def _submit(self, job: _Job) -> None:
        if job.tokens > self.max_request_tokens:
            self._count_rejected("too_large")
            raise PayloadTooLarge(_split_advice(job, self.max_request_tokens), param="notes")
        with self._cond:
            if self._stopping:
                raise NotReady("service is shutting down", retry_after_s=self.retry_after_s)
            if self._queued_tokens + job.tokens > self.max_queue_tokens:
                self._count_rejected("queue_full")
                raise Overloaded(
                    "inference queue is full; retry shortly",
                    retry_after_s=self._retry_after(
                        self._queued_tokens + job.tokens - self.max_queue_tokens
                    ),
                )
            rate = self._tokens_per_s
            # Only the work ahead counts: this request's own size is bounded by
            # max_request_tokens, and once it starts it runs to the end. Half the deadline,
            # as the rate is an estimate.
            ahead = self._queued_tokens + self._running_tokens
            budget_s = 0.5 * (job.deadline - job.enqueued)
            if rate and ahead / rate > budget_s:
                self._count_rejected("would_miss_deadline")
                raise Overloaded(
                    "the queue ahead would not clear before this request's deadline; retry shortly",
                    retry_after_s=self._retry_after(ahead - budget_s * rate),
                )
            self._queue.append(job)
            self._queued_tokens += job.tokens
            self._update_queue_gauges()
            self._cond.notify()

    def _retry_after(self, excess_tokens: float) -> int:
        """Seconds until `excess_tokens` of the work ahead have cleared, at the measured rate
        (at least the configured Retry-After, at most a minute)."""
        rate = self._tokens_per_s
        if not rate or excess_tokens <= 0:
            return self.retry_after_s
        return int(min(60, max(self.retry_after_s, math.ceil(excess_tokens / rate))))

    def _withdraw(self, job: _Job) -> bool:
        """Take a job the caller gave up on out of the queue; False if the inference thread
        has already taken it (it will be finished, or skipped as cancelled)."""
        with self._cond:
            if job.started:
                return False
            job.cancelled = True
            try:
                self._queue.remove(job)
            except ValueError:
                return False
            self._queued_tokens -= job.tokens
            self._update_queue_gauges()
            return True

    # -- the inference thread ------------------------------------------------------------
    def _run(self) -> None:
        while (jobs := self._take()) is not None:
            try:
                self._process(jobs)
            except Exception as exc:  # noqa: BLE001 - a started job must never be left waiting
                log.error("batch failed: %s", type(exc).__name__)
                for job in jobs:
                    self._fail(job, InferenceFailed("inference failed; see the service log"))
            finally:
                with self._cond:
                    self._running_tokens -= sum(job.tokens for job in jobs)

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            taken, tokens = [first], first.tokens
            # Coalesce whatever else is waiting for the same model, up to one token budget.
            while (
                self._queue
                and self._queue[0].encoder is first.encoder
                and tokens + self._queue[0].tokens <= self.max_batch_tokens
            ):
                job = self._queue.popleft()
                taken.append(job)
                tokens += job.tokens
            for job in taken:
                job.started = True
            self._queued_tokens -= tokens
            self._running_tokens += tokens
            self._update_queue_gauges()
            return taken

    def _process(self, jobs: list[_Job]) -> None:
        now = time.monotonic()
        live: list[_Job] = []
        for job in jobs:
            if job.cancelled or job.future.done():
                continue
            if now > job.deadline:
                self._fail(
                    job,
                    DeadlineExceeded(
                        "request waited past its deadline for the encoder",
                        retry_after_s=self.retry_after_s,
                    ),
                )
                continue
            self._observe("queue", now - job.enqueued)
            live.append(job)
        if not live:
            return
        infer_started = time.perf_counter()
        try:
            window_vectors = self._infer(live)
            self._update_rate(sum(job.tokens for job in live), time.perf_counter() - infer_started)
        except Exception as exc:  # noqa: BLE001 - the inference thread must outlive a bad batch
            log.error("inference failed: %s", type(exc).__name__)
            for job in live:
                self._fail(job, InferenceFailed("inference failed; see the service log"))
            return
        started = time.perf_counter()
        pooled = [
            pool_notes(job.notes, vectors)
            for job, vectors in zip(live, window_vectors, strict=True)
        ]
        self._observe("pool", time.perf_counter() - started)
        for job, vectors in zip(live, pooled, strict=True):
            job.loop.call_soon_threadsafe(_resolve, job.future, vectors)

    def _infer(self, jobs: list[_Job]) -> list[Vectors]:
        def observe(rows: int, padded_length: int, seconds: float) -> None:
            self._observe("infer", seconds)
            if self._metrics is not None:
                self._metrics.batch_windows.observe(rows)
                self._metrics.batch_tokens.observe(rows * padded_length)

        return encode_windows(
            jobs[0].encoder,
            [job.notes for job in jobs],
            pad_token_id=jobs[0].pad_token_id,
            max_batch_tokens=self.max_batch_tokens,
            on_batch=observe,
        )

    # -- helpers -------------------------------------------------------------------------
    def _update_rate(self, tokens: int, seconds: float) -> None:
        if seconds <= 0:
            return
        current = tokens / seconds
        previous = self._tokens_per_s
        self._tokens_per_s = current if previous is None else 0.8 * previous + 0.2 * current

    def _fail(self, job: _Job, error: Exception) -> None:
        # RuntimeError: the caller's event loop has closed, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_reject, job.future, error)

    def _observe(self, stage: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.stage_seconds.labels(stage).observe(seconds)

    def _count_rejected(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejected.labels(reason).inc()

    def _update_queue_gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_tokens.set(self._queued_tokens)
            self._metrics.queue_requests.set(len(self._queue))


def _split_advice(job: _Job, max_tokens: int) -> str:
    """A 413 message that says how to split: the note count that fits, from this request's
    own average note size (never a word of the notes themselves)."""
    notes = len(job.notes)
    per_note = job.tokens / max(notes, 1)
    fits = max(1, int(max_tokens // max(per_note, 1)))
    parts = max(2, math.ceil(notes / fits))
    if notes <= 1:
        return (
            f"this note holds {job.tokens} tokens (as model windows); a request may hold at "
            f"most {max_tokens}: send a shorter note, or long_note 'truncate'"
        )
    return (
        f"this request holds {job.tokens} tokens over {notes} notes (about {per_note:.0f} per "
        f"note, as model windows); a request may hold at most {max_tokens}: split it into "
        f"{parts} or more requests of at most {fits} note{'s' if fits > 1 else ''} like these"
    )


def encode_windows(
    encoder: WindowEncoder,
    groups: list[list[TokenizedNote]],
    *,
    pad_token_id: int,
    max_batch_tokens: int,
    on_batch: Callable[[int, int, float], None] | None = None,
) -> list[Vectors]:
    """Run every window of every group of notes, in batches of at most `max_batch_tokens`
    padded tokens, longest first; returns window vectors per group, in window order."""
    rows: list[tuple[int, int, npt.NDArray[np.int64]]] = [
        (g, w, ids)
        for g, notes in enumerate(groups)
        for w, ids in enumerate(win for note in notes for win in note.windows)
    ]
    rows.sort(key=lambda row: len(row[2]), reverse=True)
    outputs: list[Vectors | None] = [None] * len(groups)
    start = 0
    while start < len(rows):
        longest = len(rows[start][2])
        count = max(1, min(len(rows) - start, max_batch_tokens // longest))
        batch = rows[start : start + count]
        ids = np.full((count, longest), pad_token_id, dtype=np.int64)
        mask = np.zeros((count, longest), dtype=np.int64)
        for i, (_, _, window) in enumerate(batch):
            ids[i, : len(window)] = window
            mask[i, : len(window)] = 1
        started = time.perf_counter()
        vectors = encoder.encode(ids, mask)
        if on_batch is not None:
            on_batch(count, longest, time.perf_counter() - started)
        for i, (g, w, _) in enumerate(batch):
            out = outputs[g]
            if out is None:
                total = sum(len(n.windows) for n in groups[g])
                out = outputs[g] = np.empty((total, vectors.shape[1]), dtype=np.float32)
            out[w] = vectors[i]
        start += count
    return [out for out in outputs if out is not None]


def pool_notes(notes: list[TokenizedNote], window_vectors: Vectors) -> Vectors:
    """Token-weighted mean of each note's window vectors, re-normalised to unit length."""
    out = np.empty((len(notes), window_vectors.shape[1]), dtype=np.float32)
    row = 0
    for i, note in enumerate(notes):
        count = len(note.windows)
        if count == 1:
            out[i] = window_vectors[row]
        else:
            weights = np.asarray(note.weights, dtype=np.float32)[:, None]
            summed = (window_vectors[row : row + count] * weights).sum(axis=0)
            out[i] = summed / max(float(np.linalg.norm(summed)), 1e-12)
        row += count
    return out


def _resolve(future: asyncio.Future[Vectors], value: Vectors) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Vectors], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
