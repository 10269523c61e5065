"""Overload for a minute at several times capacity, open loop; then check recovery.

    python bench/overload.py --bundle bundles/all-MiniLM-L6-v2 --factor 4 --seconds 60

Measures capacity (notes/s) first, then sends `factor` x that rate for `seconds`, and reports
status codes, latency of served and refused requests, Retry-After presence, timeouts, and how
long until a request is served normally after the load stops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServiceProcess, cut_to_tokens, drive, fresh_service_env, load_notes
from loadgen import open_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--notes-per-request", type=int, default=4)
    args = parser.parse_args()
    texts = cut_to_tokens(load_notes(limit=64), args.bundle / "tokenizer.json", 128)
    body = {"notes": texts[: args.notes_per_request]}
    env = fresh_service_env("overload")
    with ServiceProcess(args.bundle, **env) as svc:
        batches = [body["notes"]] * 40
        capacity = asyncio.run(drive(svc.url, batches, 4)).notes_per_s / args.notes_per_request
        rate = args.factor * capacity
        print(f"capacity ~{capacity:.1f} requests/s ({args.notes_per_request} x 128-token notes)")
        report = asyncio.run(
            open_loop(svc.url, rate_per_s=rate, seconds=args.seconds, body=body, timeout_s=30)
        )
        stopped = time.perf_counter()
        with httpx.Client(base_url=svc.url, timeout=30) as client:
            while client.post("/embed", json=body).status_code != 200:
                time.sleep(0.05)
        recovery_s = time.perf_counter() - stopped
        refused = [s for s in report.samples if s.status in (429, 503)]
        print(f"load: {rate:.1f} requests/s for {args.seconds:.0f} s ({args.factor:g}x capacity)")
        print(report.summary())
        print(
            f"refusals: {len(refused)}, p50 {report.latency_ms(0.5, 503):.0f} ms, "
            f"p99 {report.latency_ms(0.99, 503):.0f} ms, all with Retry-After: "
            f"{all(s.retry_after for s in refused)}"
        )
        print(
            f"first normal response {recovery_s:.2f} s after the load stopped; "
            f"service alive: {svc.proc.poll() is None}; RSS {svc.rss_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
