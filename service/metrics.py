"""Prometheus instruments, one registry per app. Labels carry routes and stages, never content."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "notespace_requests",
            "HTTP requests by route template and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "notespace_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "notespace_stage_seconds",
            "Time per inference stage: queue, tokenize, infer, pool",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        self.queue_tokens = Gauge(
            "notespace_queue_tokens", "Tokens waiting in the batcher queue", registry=self.registry
        )
        self.queue_requests = Gauge(
            "notespace_queue_requests",
            "Requests waiting in the batcher queue",
            registry=self.registry,
        )
        self.batch_windows = Histogram(
            "notespace_batch_windows",
            "Windows (model rows) per inference batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            "notespace_batch_tokens",
            "Padded tokens per inference batch",
            buckets=(64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536),
            registry=self.registry,
        )
        self.index_snapshot_failing = Gauge(
            "notespace_index_snapshot_failing",
            "1 while the serving index's snapshot cannot be written (it serves from memory)",
            registry=self.registry,
        )
        self.rejected = Counter(
            "notespace_batcher_rejected",
            "Requests the batcher refused or dropped, by reason",
            ["reason"],
            registry=self.registry,
        )
