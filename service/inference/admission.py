"""Admission: every refusal of work for the encoder, decided in one place.

As in text-embeddings-inference, the limits are static and a request within them is never
refused for its own size: a request over `max_request_tokens` gets 413 saying how to split it,
whatever the load. Any other request is refused only for the work *ahead* of it: 503 at once
when too many requests are in flight or the queue is full (before tokenising, so shedding costs
nothing), and 503 when the queued work would not clear within half the request's deadline, with
a Retry-After estimated from the measured throughput, so a retry works once the queue drains.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import Overloaded, PayloadTooLarge
from service.inference.config import BatcherConfig
from service.metrics import ServiceMetrics


class Admission:
    def __init__(self, config: BatcherConfig, metrics: ServiceMetrics | None = None) -> None:
        self.config = config
        self.max_request_tokens = config.request_token_limit
        self._metrics = metrics
        self._pending_requests = 0  # touched only on the event loop

    @contextmanager
    def request(self, queued_tokens: int) -> Iterator[None]:
        """Hold a request's place from before tokenising until it is answered; refused at
        once while too many requests are in flight or the queue is full."""
        config = self.config
        if (
            self._pending_requests >= config.max_pending_requests
            or queued_tokens >= config.max_queue_tokens
        ):
            self.count_rejected("admission")
            raise Overloaded(
                "service is at capacity; retry shortly", retry_after_s=config.retry_after_s
            )
        self._pending_requests += 1
        try:
            yield
        finally:
            self._pending_requests -= 1

    def check_size(self, tokens: int, notes: int) -> None:
        """413 for a request over the static limit, with advice on how to split it."""
        if tokens > self.max_request_tokens:
            self.count_rejected("too_large")
            raise PayloadTooLarge(
                split_advice(tokens, notes, self.max_request_tokens), param="notes"
            )

    def check_queue(
        self, *, tokens: int, queued: int, running: int, rate: float | None, budget_s: float
    ) -> None:
        """503 when the queue cannot take `tokens`, or when the work ahead of them (queued and
        running, at the measured `rate` in tokens/s) would not clear within `budget_s`."""
        overflow = queued + tokens - self.config.max_queue_tokens
        if overflow > 0:
            self.count_rejected("queue_full")
            raise Overloaded(
                "inference queue is full; retry shortly",
                retry_after_s=self.retry_after(overflow, rate),
            )
        # Only the work ahead counts: this request's own size is bounded by max_request_tokens,
        # and once it starts it runs to the end.
        ahead = queued + running
        if rate and ahead / rate > budget_s:
            self.count_rejected("would_miss_deadline")
            raise Overloaded(
                "the queue ahead would not clear before this request's deadline; retry shortly",
                retry_after_s=self.retry_after(ahead - budget_s * rate, rate),
            )

    def retry_after(self, excess_tokens: float, rate: float | None) -> int:
        """Seconds until `excess_tokens` of the work ahead have cleared at `rate` (at least the
        configured Retry-After, at most a minute)."""
        floor = self.config.retry_after_s
        if not rate or excess_tokens <= 0:
            return floor
        return int(min(60, max(floor, math.ceil(excess_tokens / rate))))

    def count_rejected(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.rejected.labels(reason).inc()


def split_advice(tokens: int, notes: int, max_tokens: int) -> str:
    """A 413 message that says how to split: the note count that fits, from this request's
    own average note size (never a word of the notes themselves)."""
    per_note = tokens / max(notes, 1)
    fits = max(1, int(max_tokens // max(per_note, 1)))
    parts = max(2, math.ceil(notes / fits))
    if notes <= 1:
        return (
            f"this note holds {tokens} tokens (as model windows); a request may hold at "
            f"most {max_tokens}: send a shorter note, or long_note 'truncate'"
        )
    return (
        f"this request holds {tokens} tokens over {notes} notes (about {per_note:.0f} per "
        f"note, as model windows); a request may hold at most {max_tokens}: split it into "
        f"{parts} or more requests of at most {fits} note{'s' if fits > 1 else ''} like these"
    )
