"""Soak: about 70% of capacity for ten minutes, open loop; latency and memory per minute.

    python bench/soak.py --bundle bundles/all-MiniLM-L6-v2 --minutes 10 --load 0.7

Prints, per minute: requests, errors, p50/p99 latency and the service's resident memory, then
the RSS growth from the end of the first (warm-up) minute to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServiceProcess, cut_to_tokens, drive, fresh_service_env, load_notes
from loadgen import open_loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--load", type=float, default=0.7, help="fraction of capacity")
    parser.add_argument("--notes-per-request", type=int, default=4)
    args = parser.parse_args()
    texts = cut_to_tokens(load_notes(limit=64), args.bundle / "tokenizer.json", 128)
    body = {"notes": texts[: args.notes_per_request]}
    env = fresh_service_env("soak")
    with ServiceProcess(args.bundle, **env) as svc:
        capacity = asyncio.run(drive(svc.url, [body["notes"]] * 40, 4)).notes_per_s
        rate = args.load * capacity / args.notes_per_request
        print(
            f"capacity ~{capacity:.1f} notes/s; soak at {rate:.2f} requests/s "
            f"({args.load:.0%}) for {args.minutes} min"
        )
        rss: list[tuple[float, float]] = []
        done = threading.Event()

        def sample_rss() -> None:
            started = time.perf_counter()
            while not done.wait(5):
                rss.append((time.perf_counter() - started, svc.rss_mb()))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        report = asyncio.run(
            open_loop(svc.url, rate_per_s=rate, seconds=60 * args.minutes, body=body)
        )
        done.set()
        sampler.join()
    print(f"{'minute':>6} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} {'RSS MB':>7}")
    for minute in range(args.minutes):
        xs = sorted(
            (s for s in report.samples if minute * 60 <= s.sent_at < (minute + 1) * 60),
            key=lambda s: s.latency_s,
        )
        ok = [s.latency_s for s in xs if s.status == 200]
        errors = len(xs) - len(ok)
        mem = [m for t, m in rss if t <= (minute + 1) * 60]
        p50 = 1000 * ok[len(ok) // 2] if ok else float("nan")
        p99 = 1000 * ok[min(len(ok) - 1, int(0.99 * len(ok)))] if ok else float("nan")
        print(
            f"{minute + 1:>6} {len(xs):>8} {errors:>6} {p50:>7.0f} {p99:>7.0f} "
            f"{mem[-1] if mem else float('nan'):>7.0f}"
        )
    warm = [m for t, m in rss if t <= 60]
    if warm and rss:
        print(
            f"RSS after warm-up minute {warm[-1]:.0f} MB, at the end {rss[-1][1]:.0f} MB "
            f"(growth {rss[-1][1] - warm[-1]:+.0f} MB); {report.summary()}"
        )


if __name__ == "__main__":
    main()
