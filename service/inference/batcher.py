"""Token-budget batcher: one inference thread fed by a bounded queue measured in tokens.

Requests from many concurrent clients coalesce: each round takes queued jobs in arrival order
up to the token budget, sorts their windows by length (little padding), cuts batches by the
token budget, runs the encoder, and mean-pools window vectors back into note vectors.

Admission (what is refused, and when) is service.inference.admission's; the deadline bounds
the wait for the encoder: once a request's inference starts it runs to the end, however large.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from service.errors import DeadlineExceeded, InferenceFailed, NotReady
from service.inference.admission import Admission
from service.inference.config import BatcherConfig
from service.inference.tokenize import TokenizedNote
from service.inference.window_encoder import WindowEncoder
from service.inference.windows import Vectors, encode_windows, pool_notes
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


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
    def __init__(self, config: BatcherConfig, metrics: ServiceMetrics | None = None) -> None:
        self.max_batch_tokens = config.max_batch_tokens
        self.retry_after_s = config.retry_after_s
        self.admission = Admission(config, metrics)
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

    def admit(self) -> AbstractContextManager[None]:
        """Hold a request's place from before tokenising until it is answered (503 at once
        when the service is at capacity): see service.inference.admission."""
        return self.admission.request(self._queued_tokens)

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
                self.admission.count_rejected("deadline")
                raise DeadlineExceeded(
                    f"request waited past its deadline of {deadline_s:g} s for the encoder",
                    retry_after_s=self.retry_after_s,
                )
            # Done, or already running: a started request is finished, not abandoned.
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            self.admission.count_rejected("cancelled")
            raise

    def _submit(self, job: _Job) -> None:
        self.admission.check_size(job.tokens, len(job.notes))
        with self._cond:
            if self._stopping:
                raise NotReady("service is shutting down", retry_after_s=self.retry_after_s)
            self.admission.check_queue(
                tokens=job.tokens,
                queued=self._queued_tokens,
                running=self._running_tokens,
                rate=self._tokens_per_s,
                # Half the deadline, as the rate is an estimate.
                budget_s=0.5 * (job.deadline - job.enqueued),
            )
            self._queue.append(job)
            self._queued_tokens += job.tokens
            self._update_queue_gauges()
            self._cond.notify()

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

    def _update_queue_gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_tokens.set(self._queued_tokens)
            self._metrics.queue_requests.set(len(self._queue))


def _resolve(future: asyncio.Future[Vectors], value: Vectors) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future[Vectors], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
