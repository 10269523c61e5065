"""Open-loop load generator: requests leave at a fixed rate whether or not earlier ones have
returned, so a slow server shows up as latency and errors instead of a politely slower client.

Used by bench/overload.py and bench/soak.py; runnable alone:

    python bench/loadgen.py --url http://127.0.0.1:8000 --rate 50 --seconds 30 --notes 4
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx


@dataclass
class Sample:
    sent_at: float  # seconds since the run started
    latency_s: float
    status: int  # 0 = transport error, -1 = client timeout
    retry_after: str | None


@dataclass
class LoadReport:
    samples: list[Sample] = field(default_factory=list)
    not_sent: int = 0  # in-flight cap reached: the generator itself fell behind

    def statuses(self) -> Counter[int]:
        return Counter(s.status for s in self.samples)

    def latency_ms(self, q: float, status: int | None = 200) -> float:
        values = sorted(s.latency_s for s in self.samples if status is None or s.status == status)
        if not values:
            return float("nan")
        return 1000 * values[min(len(values) - 1, int(q * len(values)))]

    def summary(self) -> str:
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses().items()))
        ok = [s.latency_s for s in self.samples if s.status == 200]
        median = 1000 * statistics.median(ok) if ok else float("nan")
        return (
            f"{len(self.samples)} requests ({codes}); 200s p50 {median:.0f} ms, "
            f"p99 {self.latency_ms(0.99):.0f} ms; not sent (generator behind) {self.not_sent}"
        )


async def open_loop(
    url: str,
    *,
    rate_per_s: float,
    seconds: float,
    body: dict[str, object],
    path: str = "/embed",
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    max_in_flight: int = 1000,
) -> LoadReport:
    report = LoadReport()
    in_flight = 0
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=url, timeout=timeout_s, limits=limits, headers=headers
    ) as client:
        started = time.perf_counter()

        async def one(sent_at: float) -> None:
            nonlocal in_flight
            t0 = time.perf_counter()
            try:
                r = await client.post(path, json=body)
                status, retry = r.status_code, r.headers.get("retry-after")
            except httpx.TimeoutException:
                status, retry = -1, None
            except httpx.TransportError:
                status, retry = 0, None
            finally:
                in_flight -= 1
            report.samples.append(Sample(sent_at, time.perf_counter() - t0, status, retry))

        tasks = []
        total = int(rate_per_s * seconds)
        for i in range(total):
            due = started + i / rate_per_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= max_in_flight:
                report.not_sent += 1
                continue
            in_flight += 1
            tasks.append(asyncio.create_task(one(due - started)))
        await asyncio.gather(*tasks)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--notes", type=int, default=4, help="notes per request")
    parser.add_argument("--key", help="API key")
    args = parser.parse_args()
    body = {"notes": [f"synthetic clinical note number {i} " * 20 for i in range(args.notes)]}
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else None
    report = asyncio.run(
        open_loop(args.url, rate_per_s=args.rate, seconds=args.seconds, body=body, headers=headers)
    )
    print(report.summary())


if __name__ == "__main__":
    main()
