"""Bind a prepared run to a device: data order, per-step RNGs, losses, held-out evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from training.runs.batches import Batch
from training.runs.config import RunConfig
from training.runs.prepare import Prepared
from training.runs.steps import category_step, declutr_step, mlm_step


def _order(n_items: int, seed: int, epoch: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    return np.random.default_rng([seed, epoch]).permutation(n_items).astype(np.int64)


def micro_batch_items(n_items: int, batch_size: int, seed: int, index: int) -> list[int]:
    """Items of micro-batch `index` in an endless stream of per-epoch shuffles.

    A pure function of its arguments, so a resumed run sees exactly the data it would have.
    """
    items = []
    for position in range(index * batch_size, (index + 1) * batch_size):
        epoch, offset = divmod(position, n_items)
        items.append(int(_order(n_items, seed, epoch)[offset]))
    return items


def step_generator(seed: int, *salt: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, *salt]).integers(2**62)))


class Runner:
    """Binds a prepared run to a device and computes losses for batches."""

    def __init__(self, config: RunConfig, prepared: Prepared, device: torch.device) -> None:
        self.config = config
        self.prepared = prepared
        self.device = device
        prepared.model.model.to(device)
        if prepared.head is not None:
            prepared.head.to(device)
        use_amp = config.mixed_precision and device.type == "cuda"
        self.amp_dtype = (
            torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.use_amp = use_amp

    def autocast(self) -> AbstractContextManager[Any]:
        if not self.use_amp:
            return nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        model = self.prepared.model
        with self.autocast():
            if self.config.objective == "mlm":
                return mlm_step(model, batch)
            if self.config.objective == "declutr":
                return declutr_step(model, batch, self.config)
            head = self.prepared.head or nn.Identity()
            return category_step(model, head, batch, self.config)

    def parameters(self) -> Iterator[nn.Parameter]:
        yield from self.prepared.model.model.parameters()
        if self.prepared.head is not None:
            yield from self.prepared.head.parameters()

    def train_mode(self, on: bool) -> None:
        self.prepared.model.model.train(on)
        if self.prepared.head is not None:
            self.prepared.head.train(on)

    def eval_loss(self) -> float:
        """Mean loss over fixed held-out batches (same items and masks every time)."""
        cfg = self.config
        batcher = self.prepared.eval
        n_batches = min(cfg.eval_batches, math.ceil(batcher.num_items / cfg.batch_size))
        self.train_mode(False)
        total = 0.0
        with torch.inference_mode():
            for index in range(n_batches):
                items = [
                    (index * cfg.batch_size + i) % batcher.num_items for i in range(cfg.batch_size)
                ]
                batch = batcher.build(items, step_generator(cfg.seed, 1, index)).to(self.device)
                loss, _ = self.loss(batch)
                total += float(loss)
        self.train_mode(True)
        return total / n_batches


def build_optimizer(runner: Runner, config: RunConfig) -> torch.optim.Optimizer:
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in runner.prepared.model.model.named_parameters():
        # Biases and LayerNorm weights are not decayed (BERT practice).
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    if runner.prepared.head is not None:
        decay.extend(runner.prepared.head.parameters())
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr)


def lr_schedule(config: RunConfig) -> Callable[[int], float]:
    warmup, total = config.optim.warmup_steps, config.max_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
