"""Mixed-length traffic over HTTP: MTSamples notes at their real lengths (chunked) from bulk
clients, with short queries interleaved, against in-process sentence-transformers, same run.

    python bench/mixed_workload.py --configs auto --int8-bundle bundles/all-MiniLM-L6-v2-int8 \
        --notes 160 --bulk-clients 4 --queries 100

For each service configuration it reports: bulk notes/s and the ratio to the baseline
(SentenceTransformer.encode fp32, batch 32, on the service's own windows, averaged per note);
the padding the service's length-sorted batching added (padded tokens the encoder ran, from
/metrics, over the real window tokens, from the service's own tokenizer); short-query latency
p50 / p99 while the bulk job runs, and idle. Queries are MTSamples `description` lines (one
sentence each, 5-40 tokens), sent one at a time by one client with a pause between them.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import MTSAMPLES, ServiceProcess, drive, fresh_service_env, load_notes
from embed_throughput import CONFIGS, baseline

_METRIC = re.compile(r"^notespace_batch_tokens_sum (\S+)$", re.MULTILINE)


def load_queries(limit: int, seed: int = 1) -> list[str]:
    """Short real queries: MTSamples descriptions (synthetic sentences without the data)."""
    if MTSAMPLES.is_file():
        csv.field_size_limit(10**8)
        with MTSAMPLES.open(newline="", encoding="utf-8") as handle:
            lines = sorted({r["description"].strip() for r in csv.DictReader(handle)} - {""})
        random.Random(seed).shuffle(lines)
        return [q for q in lines if 3 <= len(q.split()) <= 30][:limit]
    return ["chest pain on exertion relieved by rest"] * limit


def real_window_tokens(texts: list[str], bundle: Path) -> int:
    from service.bundle import load_bundle
    from service.inference.tokenize import NoteTokenizer

    manifest = load_bundle(bundle).manifest
    tokenizer = NoteTokenizer(
        bundle / "tokenizer.json",
        max_tokens=manifest.max_tokens,
        overlap_tokens=32,
        max_windows_per_note=256,
    )
    return sum(note.window_tokens for note in tokenizer.tokenize(texts, "chunk"))


def padded_tokens(url: str) -> float:
    match = _METRIC.search(httpx.get(f"{url}/metrics", timeout=30).text)
    return float(match.group(1)) if match else float("nan")


async def queries_during(
    url: str, queries: list[str], pause_s: float, until: asyncio.Future[object] | None
) -> list[float]:
    """One client, one query at a time; stops when `until` is done (or after all queries)."""
    latencies = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for query in queries:
            if until is not None and until.done():
                break
            started = time.perf_counter()
            r = await http.post("/embed", json={"notes": [query]})
            # Shed (503 + Retry-After): a client retries, and the latency counts the wait.
            while r.status_code in (429, 503) and "retry-after" in r.headers:
                await asyncio.sleep(float(r.headers["retry-after"]))
                r = await http.post("/embed", json={"notes": [query]})
            r.raise_for_status()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(pause_s)
    return latencies


async def bulk_with_queries(
    url: str, batches: list[list[str]], clients: int, queries: list[str], pause_s: float
) -> tuple[float, list[float]]:
    bulk = asyncio.ensure_future(drive(url, batches, clients))
    await asyncio.sleep(0.5)  # let the bulk job fill the queue first
    latencies = await queries_during(url, queries, pause_s, bulk)
    result = await bulk
    if result.errors:
        print(f"  ! {result.errors} bulk requests failed")
    return result.notes_per_s, latencies


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--int8-bundle", type=Path, default=None)
    parser.add_argument("--configs", nargs="+", default=["auto"], choices=sorted(CONFIGS))
    parser.add_argument("--notes", type=int, default=160, help="bulk notes, real lengths")
    parser.add_argument("--batch", type=int, default=16, help="notes per bulk request")
    parser.add_argument("--bulk-clients", type=int, default=4)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--query-pause-ms", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--env", nargs="*", default=[], help="extra NAME=VALUE for the service")
    args = parser.parse_args()

    texts = load_notes(limit=args.notes)
    queries = load_queries(args.queries)
    real = real_window_tokens(texts, args.bundle)
    words = [len(t.split()) for t in texts]
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; {len(texts)} notes ({statistics.median(words):.0f}"
        f" words median, {min(words)}-{max(words)}), {real} real window tokens; "
        f"{len(queries)} queries; {args.bulk_clients} bulk clients x {args.batch} notes/request"
    )
    base_rate, _ = baseline(texts, args.bundle, args.threads)
    print(f"baseline sentence-transformers fp32: {base_rate:.1f} notes/s")
    print(
        "| config | bulk notes/s | ratio | padded / real tokens | query p50 ms (p99) during bulk"
        " | query p50 ms idle |\n|---|---:|---:|---:|---:|---:|"
    )
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    extra = dict(item.split("=", 1) for item in args.env)
    for config in args.configs:
        kind, env = CONFIGS[config]
        bundle = args.bundle if kind == "fp32" else args.int8_bundle
        if bundle is None:
            parser.error(f"config {config} needs --int8-bundle")
        env = {
            "NOTESPACE_INTRA_OP_THREADS": str(args.threads),
            **fresh_service_env("mixed"),
            **env,
            **extra,
        }
        with ServiceProcess(bundle, **env) as svc:
            asyncio.run(drive(svc.url, batches[:1], 1))  # warm-up
            idle = asyncio.run(
                queries_during(svc.url, queries[:30], args.query_pause_ms / 1e3, None)
            )
            before = padded_tokens(svc.url)
            rate, during = asyncio.run(
                bulk_with_queries(
                    svc.url, batches, args.bulk_clients, queries, args.query_pause_ms / 1000
                )
            )
            padded = padded_tokens(svc.url) - before
            query_real = real_window_tokens(queries[: len(during)], bundle)
            ratio = padded / (real + query_real)
            print(
                f"| {config} | {rate:.1f} | {rate / base_rate:.2f}x | {ratio:.3f} | "
                f"{ms(during, 0.5):.1f} ({ms(during, 0.99):.1f}), {len(during)} queries | "
                f"{ms(idle, 0.5):.1f} |",
                flush=True,
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
