"""Quality and speed of int8 recipes for a bundle's ONNX graph, against its fp32 graph: the
evidence behind `training/export/precision.py: quantize_int8` and its quality gate.

    python bench/int8_recipes.py --notes 500            # MTSamples when ../shared is present

Quality: cosine to fp32 and top-10 neighbour overlap among the notes (first 256-token window),
the same figures the export gate checks. Speed: best of 3 on one batch of 32 notes x 256 tokens,
ORT CPU provider, fp32 graph timed alongside (other load on the machine depresses both alike).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import load_notes
from training.export import neighbour_overlap, onnx_vectors

ROLES = ("q", "k", "v", "attn_out", "ffn_up", "ffn_down")  # weight MatMuls per BERT layer


def _dynamic(
    exclude: Callable[[str, int], bool], reduce_range: bool = False
) -> Callable[..., None]:
    def build(src: Path, dst: Path, matmuls: list[str]) -> None:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=[n for i, n in enumerate(matmuls) if exclude(ROLES[i % 6], i // 6)],
            extra_options={"MatMulConstBOnly": True},
        )

    return build


def _blockwise(bits: int, block: int) -> Callable[..., None]:
    def build(src: Path, dst: Path, matmuls: list[str]) -> None:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(src)), bits=bits, block_size=block, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), False)

    return build


RECIPES: dict[str, Callable[..., None]] = {
    "dynamic, all weight MatMuls": _dynamic(lambda role, layer: False),
    "dynamic, FFN down fp32 (shipped)": _dynamic(lambda role, layer: role == "ffn_down"),
    "dynamic, FFN down fp32, reduce_range": _dynamic(
        lambda role, layer: role == "ffn_down", reduce_range=True
    ),
    "dynamic, FFN down + attn out fp32": _dynamic(
        lambda role, layer: role in ("ffn_down", "attn_out")
    ),
    "MatMulNBits int8, block 32, int8 compute": _blockwise(8, 32),
    "MatMulNBits int8, block 128, int8 compute": _blockwise(8, 128),
    "MatMulNBits int4, block 32, int8 compute": _blockwise(4, 32),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("bundles/all-MiniLM-L6-v2"))
    parser.add_argument("--notes", type=int, default=500)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from transformers import AutoTokenizer

    src = args.bundle / "model.onnx"
    tokenizer = AutoTokenizer.from_pretrained(args.bundle)
    texts = load_notes(limit=args.notes)
    graph = onnx.load(str(src)).graph
    shapes = {i.name: numpy_helper.to_array(i).shape for i in graph.initializer}
    matmuls = [
        n.name for n in graph.node if n.op_type == "MatMul" and len(shapes.get(n.input[1], ())) == 2
    ]
    if len(matmuls) % 6:
        raise SystemExit(f"{len(matmuls)} weight MatMuls: not a BERT-shaped graph")
    batch = tokenizer(
        texts[:32], padding="max_length", truncation=True, max_length=256, return_tensors="np"
    )
    feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")}

    def speed(model: Path) -> float:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            session.run(None, feeds)
            best = min(best, time.perf_counter() - t0)
        return 32 / best

    reference = onnx_vectors(src, tokenizer, texts, 256)
    print(f"{len(texts)} notes; gate: min cosine >= 0.98 and top-10 overlap >= 0.95")
    print("| recipe | min cosine | mean cosine | top-10 overlap | notes/s (fp32 same run) |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as work:
        for name in args.recipes:
            dst = Path(work) / "candidate.onnx"
            RECIPES[name](src, dst, matmuls)
            vectors = onnx_vectors(dst, tokenizer, texts, 256)
            cos = (reference * vectors).sum(1) / (
                np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1)
            )
            overlap = neighbour_overlap(reference, vectors, 10)
            print(
                f"| {name} | {cos.min():.5f} | {cos.mean():.5f} | {overlap:.4f} | "
                f"{speed(dst):.1f} ({speed(src):.1f}) |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
