"""Quantisation-aware distillation: a few hundred steps of an int8-simulated student matching the
fp32 teacher's pooled embeddings on the trust's own notes, before static calibration.

Objective: mean over windows of 1 - cos(student(x), teacher(x)) on mean-pooled, L2-normalised
embeddings (the vectors the service returns), with the student's weight MatMuls run through
fake quantisation as the int8 graph will run them (weights per output channel, symmetric;
inputs per tensor, asymmetric, ranges tracked as an exponential moving average of min / max).
Gradients pass the rounding straight through (torch.fake_quantize_*). The teacher is the
unchanged fp32 model, so the student learns weights whose int8 form lands near fp32's vectors,
not a different model. Reference: Jacob et al. 2018 (QAT); Hinton et al. 2015 (distillation).
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.quantize.calibration import Window

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatConfig:
    steps: int = 200
    batch_windows: int = 16
    learning_rate: float = 1e-5
    ema_decay: float = 0.99  # activation range tracking
    seed: int = 0
    threads: int = 2


class FakeQuantLinear(torch.nn.Module):
    """nn.Linear whose input and weight pass through int8 fake quantisation."""

    low: torch.Tensor  # the input range tracked so far (buffers: saved, not trained)
    high: torch.Tensor
    seen: torch.Tensor

    def __init__(self, linear: torch.nn.Linear, ema_decay: float) -> None:
        super().__init__()
        self.linear = linear
        self.ema_decay = ema_decay
        self.register_buffer("low", torch.tensor(0.0))
        self.register_buffer("high", torch.tensor(0.0))
        self.register_buffer("seen", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            low, high = x.min().clamp(max=0.0), x.max().clamp(min=0.0)
            if bool(self.seen):
                d = self.ema_decay
                low, high = d * self.low + (1 - d) * low, d * self.high + (1 - d) * high
            self.low.copy_(low)
            self.high.copy_(high)
            self.seen.fill_(True)
        scale = float(max((self.high - self.low).item() / 255.0, 1e-8))
        zero_point = round(-float(self.low.item()) / scale)
        x_q = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)  # [.., in]
        weight = self.linear.weight  # [out, in]
        w_scale = (weight.detach().abs().amax(dim=1) / 127.0).clamp(min=1e-8)  # [out]
        w_zero = torch.zeros_like(w_scale, dtype=torch.int32)
        w_q = torch.fake_quantize_per_channel_affine(weight, w_scale, w_zero, 0, -128, 127)
        return torch.nn.functional.linear(x_q, w_q, self.linear.bias)  # [.., out]


def insert_fake_quant(model: torch.nn.Module, ema_decay: float) -> list[str]:
    """Wrap every nn.Linear inside the encoder's layers; returns the wrapped names."""
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, torch.nn.Linear) and ".layer." in f".{full}":
                setattr(module, child_name, FakeQuantLinear(child, ema_decay))
                wrapped.append(full)
    return wrapped


def remove_fake_quant(model: torch.nn.Module) -> None:
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FakeQuantLinear):
                setattr(module, child_name, child.linear)


def _pooled(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, D]
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)  # [B, D]
    return torch.nn.functional.normalize(pooled, dim=-1)  # [B, D]


def _batch(windows: list[Window], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(w) for w in windows)
    ids = np.full((len(windows), longest), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, w in enumerate(windows):
        ids[i, : len(w)] = w
        mask[i, : len(w)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def distil_for_int8(
    base: Path, out: Path, windows: list[Window], config: QatConfig, pad_id: int = 0
) -> dict[str, Any]:
    """Fine-tune a copy of `base` under int8 simulation towards `base`'s own vectors; write the
    student (fp32 weights, a Hugging Face directory) to `out`; return the run's record."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    teacher = AutoModel.from_pretrained(base, local_files_only=True, attn_implementation="eager")
    student = AutoModel.from_pretrained(base, local_files_only=True, attn_implementation="eager")
    teacher.eval()
    student.train()
    for module in student.modules():  # no dropout: the target is the deterministic teacher
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    wrapped = insert_fake_quant(student, config.ema_decay)
    optimiser = torch.optim.AdamW(student.parameters(), lr=config.learning_rate, weight_decay=0.0)
    order = random.Random(config.seed)  # noqa: S311 - batch order, not a secret
    losses: list[float] = []
    started = time.perf_counter()
    for step in range(config.steps):
        picked = order.sample(windows, min(config.batch_windows, len(windows)))
        ids, mask = _batch(picked, pad_id)
        with torch.no_grad():
            target = _pooled(teacher, ids, mask)  # [B, D]
        got = _pooled(student, ids, mask)  # [B, D]
        loss = (1.0 - (got * target).sum(dim=-1)).mean()  # scalar
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimiser.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0 or step == config.steps - 1:
            log.info("qat step %d/%d: 1 - cos %.5f", step + 1, config.steps, losses[-1])
    remove_fake_quant(student)
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(out)
    for extra in ("sentence_bert_config.json",):
        if (base / extra).is_file():
            (out / extra).write_bytes((base / extra).read_bytes())
    record = {
        **asdict(config),
        "objective": "1 - cos(int8-simulated student, fp32 teacher) on pooled embeddings",
        "windows": len(windows),
        "fake_quantised_linears": len(wrapped),
        "loss_first_20": float(np.mean(losses[:20])),
        "loss_last_20": float(np.mean(losses[-20:])),
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "qat.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
