"""Overload: far more than the service's capacity → fast 503/429 with Retry-After, no timeouts,
no crash, and normal service as soon as the load stops (bench/overload.py runs a minute)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import migrated_sqlite_url
from tests.support.subprocess_server import ServiceProcess

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from loadgen import open_loop

pytestmark = pytest.mark.slow
# ~240 windows of the tiny model per request: capacity is about ten requests a second.
BODY = {"notes": ["patient admitted with chest pain and shortness of breath " * 20] * 32}


def test_overload_sheds_fast_and_recovers(tiny_bundle: Path) -> None:
    # A small queue, so a few hundred requests a second are several times capacity. The
    # service runs in its own process so the load generator does not share its GIL.
    env = {
        "NOTESPACE_BUNDLE_PATH": str(tiny_bundle),
        "NOTESPACE_DATABASE_URL": migrated_sqlite_url(),
        "NOTESPACE_INDEX_DIR": tempfile.mkdtemp(),
        "NOTESPACE_INTRA_OP_THREADS": "1",
        "NOTESPACE_MAX_QUEUE_TOKENS": "32768",
        "NOTESPACE_MAX_BATCH_TOKENS": "512",
        "NOTESPACE_MAX_PENDING_REQUESTS": "16",
    }
    with ServiceProcess(env) as server:
        # Capacity first (closed loop), then four times that rate, open loop.
        probe = asyncio.run(
            open_loop(server.url, rate_per_s=10, seconds=2, body=BODY, timeout_s=10)
        )
        capacity = 1000 / max(probe.latency_ms(0.5), 1.0)
        rate = min(4 * max(capacity, 5.0), 80.0)
        report = asyncio.run(
            open_loop(server.url, rate_per_s=rate, seconds=5, body=BODY, timeout_s=15)
        )
        statuses = report.statuses()
        summary = f"{rate:.0f} req/s: {report.summary()}"
        assert statuses[-1] == 0 and statuses[0] == 0, summary  # no timeouts, no resets
        assert set(statuses) <= {200, 503, 429}, summary
        assert statuses[503] > 0 and statuses[200] > 0, summary
        assert all(s.retry_after for s in report.samples if s.status == 503)
        # Refusals are quick: far quicker than a served request (on a starved CPU nothing is
        # quick in absolute terms, so the bound is relative as well).
        refused_p50 = report.latency_ms(0.5, status=503)
        assert refused_p50 < max(500.0, 0.5 * report.latency_ms(0.5, status=200)), summary
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while c.post("/embed", json=BODY).status_code != 200:
                assert time.monotonic() < deadline, "service did not recover"
                time.sleep(0.05)
            assert c.get("/health").status_code == 200
        assert server.proc.poll() is None  # no crash
