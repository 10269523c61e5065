"""Shared bench helpers: note loading, service subprocess, an async HTTP load driver."""

from __future__ import annotations

import asyncio
import csv
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.subprocess_server import ServiceProcess as _TestServiceProcess

MTSAMPLES = Path(__file__).resolve().parents[1].parent / "shared/data/mtsamples/mtsamples.csv"


def load_notes(path: Path | None = None, limit: int = 2000, seed: int = 0) -> list[str]:
    """Distinct MTSamples transcriptions when available, else a synthetic clinical corpus."""
    path = path or MTSAMPLES
    if path.is_file():
        csv.field_size_limit(10**8)
        with path.open(newline="", encoding="utf-8") as handle:
            texts = sorted({r["transcription"].strip() for r in csv.DictReader(handle)} - {""})
        random.Random(seed).shuffle(texts)
        return texts[:limit]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.support.tiny_model import synthetic_corpus

    return [" ".join(synthetic_corpus(20, seed=i)) for i in range(limit)]


def cut_to_tokens(texts: list[str], tokenizer_file: Path, tokens: int) -> list[str]:
    """Notes of exactly `tokens` content tokens (longer notes repeated, then cut)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    out = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        while len(ids) < tokens:
            ids = ids + ids
        out.append(tok.decode(ids[:tokens]))
    return out


def fresh_service_env(prefix: str, **extra: str) -> dict[str, str]:
    """Settings for a service on a new, migrated SQLite registry and an empty index dir, so it
    serves exactly the bundle it is given."""
    import tempfile

    from service.registry.database import upgrade

    work = Path(tempfile.mkdtemp(prefix=f"notespace-{prefix}-"))
    url = f"sqlite:///{work}/registry.db"
    upgrade(url)
    return {"NOTESPACE_DATABASE_URL": url, "NOTESPACE_INDEX_DIR": str(work / "index"), **extra}


class ServiceProcess(_TestServiceProcess):
    """The service on a bundle, in its own process, ready on entry."""

    def __init__(self, bundle: Path, **env: str) -> None:
        super().__init__({"NOTESPACE_BUNDLE_PATH": str(bundle), **env})


def proc_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def notes_payload(batch: list[str]) -> dict[str, Any]:
    return {"notes": batch}


def openai_payload(model: str) -> Callable[[list[str]], dict[str, Any]]:
    """The OpenAI embeddings body, for peers (infinity) and our /v1/embeddings alike."""
    return lambda batch: {"input": batch, "model": model}


@dataclass
class LoadResult:
    notes_per_s: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    shed: int = 0  # 503/429 answers retried after Retry-After


async def drive(
    url: str,
    batches: list[list[str]],
    concurrency: int,
    path: str = "/embed",
    payload: Callable[[list[str]], dict[str, Any]] = notes_payload,
) -> LoadResult:
    """Closed-loop load: `concurrency` clients each send their next batch when one returns."""
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    latencies: list[float] = []
    errors = 0
    shed = 0
    notes = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors, notes, shed
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            r = await http.post(path, json=payload(batch))
            # A well-behaved integration job retries a shed request after Retry-After; the
            # latency then counts the wait, and the retry is counted separately.
            while r.status_code in (429, 503) and "retry-after" in r.headers:
                shed += 1
                await asyncio.sleep(float(r.headers["retry-after"]))
                r = await http.post(path, json=payload(batch))
            latencies.append(time.perf_counter() - started)
            if r.status_code == 200:
                notes += len(batch)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        notes_per_s=notes / elapsed,
        requests=len(latencies),
        errors=errors,
        shed=shed,
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    )
