"""The query lane: a short request runs at once on its own model copy instead of waiting behind
bulk batches in the queue, with the same vectors the batcher would give."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from service.bundle import load_bundle
from service.errors import DeadlineExceeded
from service.inference.batcher import Batcher
from service.inference.config import BatcherConfig
from service.inference.engine import EmbeddingEngine
from service.inference.runtime import ModelRuntime
from service.metrics import ServiceMetrics
from service.orchestration.configs import engine_config
from tests.conftest import make_settings, runtime_config_of

QUERY = ["chest pain on exertion"]
BULK = ["patient admitted with chest pain shortness of breath fever cough " * 20] * 4


RUNNING = threading.Event()  # set once a bulk batch is inside the (stuck) encoder


def _engine(bundle: Path, gate: threading.Event, **settings: int) -> EmbeddingEngine:
    """An engine whose bulk encoder blocks until `gate` is set: a batch that never ends."""
    config = make_settings(bundle, request_deadline_ms=400, **settings)
    runtime = ModelRuntime.load(load_bundle(bundle), runtime_config_of(config))
    bulk_encoder = runtime.encoder

    class Stuck:
        def encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            RUNNING.set()
            gate.wait()
            return bulk_encoder.encode(ids, mask)

    stuck = ModelRuntime(
        manifest=runtime.manifest,
        tokenizer=runtime.tokenizer,
        encoder=Stuck(),
        lane_encoder=runtime.lane_encoder,
    )
    batcher = Batcher(BatcherConfig(max_batch_tokens=4096, max_queue_tokens=65536, retry_after_s=1))
    batcher.start()
    RUNNING.clear()
    return EmbeddingEngine(stuck, batcher, engine_config(config), ServiceMetrics())


async def _bulk_running() -> None:
    """Wait until the bulk batch is inside the encoder, so the query cannot join its batch."""
    for _ in range(3000):
        if RUNNING.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the bulk batch never reached the encoder")


def test_a_short_query_is_served_while_the_bulk_batch_runs(tiny_bundle: Path) -> None:
    gate = threading.Event()
    engine = _engine(tiny_bundle, gate, query_lane_max_tokens=64)
    expected = ModelRuntime.load(
        load_bundle(tiny_bundle),
        runtime_config_of(make_settings(tiny_bundle, query_lane_max_tokens=0)),
    ).embed_sync(QUERY, "chunk", max_batch_tokens=4096)

    async def scenario() -> tuple[np.ndarray, BaseException | None]:
        bulk = asyncio.ensure_future(engine.embed(BULK))
        await _bulk_running()
        query = await asyncio.wait_for(engine.embed(QUERY), timeout=5)
        assert not bulk.done()
        gate.set()
        bulk_error = None
        try:
            await bulk
        except DeadlineExceeded as exc:  # fine either way: it was stuck on purpose
            bulk_error = exc
        return query.vectors, bulk_error

    try:
        vectors, _ = asyncio.run(scenario())
    finally:
        gate.set()
        engine._batcher.stop()
    # Tolerance: the same graph, batch of one either way; kernels may differ by rounding.
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_without_the_lane_a_query_waits_behind_the_bulk(tiny_bundle: Path) -> None:
    gate = threading.Event()
    engine = _engine(tiny_bundle, gate, query_lane_max_tokens=0)
    assert engine.serving().lane_encoder is None

    async def scenario() -> None:
        bulk = asyncio.ensure_future(engine.embed(BULK))
        await _bulk_running()
        with pytest.raises(DeadlineExceeded):
            await engine.embed(QUERY)  # queued behind the stuck batch past its deadline
        gate.set()
        await asyncio.gather(bulk, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        engine._batcher.stop()


def test_a_request_over_the_lane_limit_queues(tiny_bundle: Path) -> None:
    gate = threading.Event()
    engine = _engine(tiny_bundle, gate, query_lane_max_tokens=8)  # the query is longer

    async def scenario() -> None:
        bulk = asyncio.ensure_future(engine.embed(BULK))
        await _bulk_running()
        with pytest.raises(DeadlineExceeded):
            await engine.embed(QUERY)
        gate.set()
        await asyncio.gather(bulk, return_exceptions=True)

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        engine._batcher.stop()
