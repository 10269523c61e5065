"""Measure training throughput (notes/s, tokens/s) per objective on this machine."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from training.runs.config import RunConfig, parse_config
from training.runs.model import pick_device
from training.runs.prepare import prepare
from training.runs.runner import Runner, micro_batch_items, step_generator

MTSAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "mtsamples" / "mtsamples.csv"


def _config(objective: str, args: argparse.Namespace, out: Path) -> RunConfig:
    corpus: dict[str, Any] = (
        {"format": "mtsamples", "path": str(args.corpus), "split": {"by": "text"}}
        if args.corpus
        else {"format": "synthetic", "synthetic_notes": 400}
    )
    data: dict[str, Any] = {
        "objective": objective,
        "output_dir": str(out),
        "corpus": corpus,
        "batch_size": args.batch_size or (8 if objective == "declutr" else 16),
        "num_threads": args.threads,
        "device": args.device,
        "mlm": {"block_size": args.block_size},
        "category": {"max_tokens": args.block_size},
    }
    if args.base:
        data["base_model"] = str(args.base)
    return parse_config(data)


def measure(config: RunConfig, steps: int, warmup: int) -> dict[str, float]:
    """Time forward + backward + AdamW for `steps` optimiser steps after `warmup` untimed ones."""
    prepared = prepare(config)
    runner = Runner(config, prepared, pick_device(config.device))
    optimizer = torch.optim.AdamW(list(runner.parameters()), lr=config.optim.lr)
    runner.train_mode(True)
    notes, tokens, seconds = 0.0, 0, 0.0
    for step in range(warmup + steps):
        items = micro_batch_items(prepared.train.num_items, config.batch_size, config.seed, step)
        batch = prepared.train.build(items, step_generator(config.seed, 0, step)).to(runner.device)
        started = time.perf_counter()
        loss, _ = runner.loss(batch)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if runner.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            seconds += time.perf_counter() - started
            notes += batch.notes
            tokens += batch.tokens
    return {
        "s_per_step": seconds / steps,
        "notes_per_s": notes / seconds,
        "tokens_per_s": tokens / seconds,
        "fraction_notes_used": prepared.fraction_used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objectives", nargs="+", default=["mlm", "declutr", "category"])
    parser.add_argument("--base", type=Path, help="encoder directory [default: all-MiniLM-L6-v2]")
    parser.add_argument("--corpus", type=Path, default=MTSAMPLES if MTSAMPLES.is_file() else None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), steps {args.steps}")
    print(
        f"{'objective':<10} {'batch':>5} {'s/step':>8} {'notes/s':>8} {'tokens/s':>9} {'used':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for objective in args.objectives:
            config = _config(objective, args, Path(tmp) / objective)
            r = measure(config, args.steps, args.warmup)
            print(
                f"{objective:<10} {config.batch_size:>5} {r['s_per_step']:>8.2f} "
                f"{r['notes_per_s']:>8.2f} {r['tokens_per_s']:>9.0f} "
                f"{100 * r['fraction_notes_used']:>5.1f}%"
            )


if __name__ == "__main__":
    main()
