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
from training.runs.steps import (
    Parts,
    StepModels,
    category_loss,
    declutr_backward_cached,
    declutr_loss_one_pass,
    mlm_loss,
)


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


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 units (AVX512-BF16 or AMX): bf16 autocast is fast only there."""
    cpu = torch.backends.cpu
    capability = cpu.get_cpu_capability() if hasattr(cpu, "get_cpu_capability") else ""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    has_units = any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return has_units and capability.startswith("AVX512")


def autocast_dtype(config: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a run uses on `device`, or None for fp32."""
    if not config.mixed_precision:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_bf16() else None


class Runner:
    """Binds a prepared run to a device and computes losses (and gradients) for batches."""

    def __init__(self, config: RunConfig, prepared: Prepared, device: torch.device) -> None:
        self.config = config
        self.prepared = prepared
        self.device = device
        prepared.model.model.to(device)
        if prepared.head is not None:
            prepared.head.to(device)
        if prepared.teacher is not None:
            prepared.teacher.to(device)
        self.amp_dtype = autocast_dtype(config, device)
        self.use_amp = self.amp_dtype is not None

    @property
    def precision(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _models(self) -> StepModels:
        p = self.prepared
        return StepModels(p.model, self.config, p.mlm_weight, p.head, p.teacher)

    def loss(self, batch: Batch) -> tuple[torch.Tensor, Parts]:
        """The batch's full loss in one pass (held-out evaluation; plain training steps)."""
        models = self._models()
        with self.autocast():
            if self.config.objective == "mlm":
                return mlm_loss(models, batch)
            if self.config.objective == "declutr":
                return declutr_loss_one_pass(models, batch)
            return category_loss(models, batch)

    def backward(
        self, batch: Batch, scale: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[float, Parts]:
        """Accumulate the batch's gradients (loss passed through `scale` first)."""
        if self.config.objective == "declutr" and self.config.declutr.chunk_size is not None:
            return declutr_backward_cached(self._models(), batch, scale, self.autocast)
        loss, parts = self.loss(batch)
        scale(loss).backward()  # type: ignore[no-untyped-call]
        return float(loss.detach()), parts

    def parameters(self) -> Iterator[nn.Parameter]:
        yield from self.prepared.model.model.parameters()
        if self.prepared.head is not None:
            yield from self.prepared.head.parameters()

    def train_mode(self, on: bool) -> None:
        self.prepared.model.model.train(on)
        if self.prepared.head is not None:
            self.prepared.head.train(on)

    def encoder_trainable(self, on: bool) -> None:
        """Freeze or unfreeze the encoder (the MLM head's warm-up trains the head alone)."""
        for param in self.prepared.model.encoder.parameters():
            param.requires_grad_(on)

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
