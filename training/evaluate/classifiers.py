"""Few-shot classifiers: a logistic-regression probe and the paper's head on frozen embeddings,
and the paper's head on a fully fine-tuned encoder. Each selects on validation macro-F1."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from torch import nn

from training.evaluate.data import EvaluationError

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
LR_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


@dataclass(frozen=True)
class Fitted:
    """Test predictions of the model chosen on validation, and what was chosen."""

    test_pred: list[str]
    val_macro_f1: float
    chosen: dict[str, Any]


def _macro_f1(y: Sequence[int], pred: Sequence[int], n_classes: int) -> float:
    return float(f1_score(y, pred, labels=list(range(n_classes)), average="macro", zero_division=0))


def _check_dims(*arrays: Vectors) -> None:
    dims = {a.shape[1] for a in arrays if a.ndim == 2}
    if len(dims) != 1 or any(a.ndim != 2 for a in arrays):
        raise EvaluationError(f"embedding dimensions do not match: {sorted(dims)}")


def logistic_probe(
    x_train: Vectors,
    y_train: Sequence[str],
    x_val: Vectors,
    y_val: Sequence[str],
    x_test: Vectors,
    classes: Sequence[str],
    *,
    seed: int,
    c_grid: Sequence[float] = LR_C_GRID,
) -> Fitted:
    """Multinomial logistic regression on frozen embeddings; C chosen on validation."""
    _check_dims(x_train, x_val, x_test)
    index = {c: i for i, c in enumerate(classes)}
    ytr = [index[y] for y in y_train]
    yva = [index[y] for y in y_val]
    best: tuple[float, float, LogisticRegression] | None = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(x_train, ytr)
        score = _macro_f1(yva, model.predict(x_val).tolist(), len(classes))
        if best is None or score > best[0]:
            best = (score, c, model)
    assert best is not None
    pred = best[2].predict(x_test).tolist()
    return Fitted([classes[i] for i in pred], best[0], {"C": best[1]})


def cv_logistic_probe(
    x_train: Vectors,
    y_train: Sequence[str],
    x_test: Vectors,
    classes: Sequence[str],
    *,
    folds: int = 5,
    c_grid: Sequence[float] = LR_C_GRID,
) -> Fitted:
    """Multinomial logistic regression on frozen embeddings, C chosen by stratified k-fold
    cross-validation *within the training draw* (macro-F1), then refitted on the whole draw.

    Nothing scored is looked at to choose C, so a validation split can be scored honestly.
    Folds = min(`folds`, the smallest class count); a draw with one example of some class
    cannot be cross-validated and uses the middle of the grid.
    """
    from sklearn.model_selection import StratifiedKFold

    _check_dims(x_train, x_test)
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[v] for v in y_train], dtype=np.int64)
    k = min(folds, int(np.bincount(y, minlength=len(classes))[np.unique(y)].min()))
    scores: dict[float, float] = {}
    if k >= 2:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
        splits = list(splitter.split(x_train, y))
        for c in c_grid:
            fold_scores = []
            for train_idx, held_idx in splits:
                model = LogisticRegression(C=c, max_iter=2000)
                model.fit(x_train[train_idx], y[train_idx])
                fold_scores.append(
                    _macro_f1(
                        y[held_idx].tolist(),
                        model.predict(x_train[held_idx]).tolist(),
                        len(classes),
                    )
                )
            scores[c] = float(np.mean(fold_scores))
        # ties go to the smaller C (the stronger regulariser)
        chosen = max(sorted(scores), key=lambda c: scores[c])
    else:
        chosen = sorted(c_grid)[len(c_grid) // 2]
    model = LogisticRegression(C=chosen, max_iter=2000)
    model.fit(x_train, y)
    pred = model.predict(x_test).tolist()
    cv_score = scores.get(chosen, float("nan"))
    return Fitted([classes[i] for i in pred], cv_score, {"C": chosen, "cv_folds": k})


class PaperHead(nn.Module):
    """dropout → Linear(d, d) → tanh → dropout → Linear(d, C) on the pooled embedding."""

    def __init__(self, dim: int, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, dim),
            nn.Tanh(),
            nn.Dropout(dropout),
            nn.Linear(dim, n_classes),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(pooled)  # [B, D] -> [B, C]
        return logits


def _predict_head(head: PaperHead, x: torch.Tensor) -> list[int]:
    head.eval()
    with torch.inference_mode():
        pred: list[int] = head(x).argmax(dim=1).tolist()
    return pred


def frozen_head(
    x_train: Vectors,
    y_train: Sequence[str],
    x_val: Vectors,
    y_val: Sequence[str],
    x_test: Vectors,
    classes: Sequence[str],
    *,
    seed: int,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 32,
) -> Fitted:
    """The paper's head trained on frozen embeddings; the epoch is chosen on validation."""
    _check_dims(x_train, x_val, x_test)
    torch.manual_seed(seed)
    index = {c: i for i, c in enumerate(classes)}
    xtr, xva, xte = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x_train, x_val, x_test))
    ytr = torch.tensor([index[y] for y in y_train])
    yva = [index[y] for y in y_val]
    head = PaperHead(xtr.shape[1], len(classes))
    optim = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    for epoch in range(1, epochs + 1):
        head.train()
        for batch in torch.randperm(len(ytr), generator=generator).split(batch_size):  # type: ignore[no-untyped-call]
            loss = nn.functional.cross_entropy(head(xtr[batch]), ytr[batch])
            optim.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optim.step()
        score = _macro_f1(yva, _predict_head(head, xva), len(classes))
        if score > best[0]:
            best = (score, epoch, copy.deepcopy(head.state_dict()))
    head.load_state_dict(best[2])
    pred = _predict_head(head, xte)
    return Fitted([classes[i] for i in pred], best[0], {"epoch": best[1], "lr": lr})


class _FineTuned(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden_size: int = encoder.config.hidden_size  # type: ignore[union-attr,assignment]
        self.head = PaperHead(hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        from training.objectives.pooling import mean_pool

        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.head(mean_pool(hidden, attention_mask))  # [B, C]
        return logits


@dataclass(frozen=True)
class StepSchedule:
    """Fine-tuning in optimiser steps: validation macro-F1 every `eval_every` steps (and at the
    last), stop after `patience` evaluations without a gain or at `max_steps`; the best state
    is restored."""

    max_steps: int = 200
    eval_every: int = 10
    patience: int = 5

    def __post_init__(self) -> None:
        if min(self.max_steps, self.eval_every, self.patience) < 1:
            raise EvaluationError("max_steps, eval_every and patience must be at least 1")

    @classmethod
    def epochs(cls, epochs: int, n_train: int, batch_size: int) -> StepSchedule:
        """The old fixed-epoch protocol: evaluate once per epoch, never stop early."""
        steps_per_epoch = math.ceil(n_train / batch_size)
        return cls(epochs * steps_per_epoch, steps_per_epoch, max(epochs, 1))


def fine_tune(
    checkpoint: Path,
    train_texts: Sequence[str],
    y_train: Sequence[str],
    val_texts: Sequence[str],
    y_val: Sequence[str],
    test_texts: Sequence[str],
    classes: Sequence[str],
    *,
    seed: int,
    schedule: StepSchedule = StepSchedule(),
    encoder_lr: float = 2e-5,
    head_lr: float = 1e-3,
    batch_size: int = 16,
    max_length: int = 256,
    eval_batch_size: int = 64,
) -> Fitted:
    """Fine-tune the whole encoder with the paper's head (first `max_length` tokens of each
    note) with early stopping on validation macro-F1, then score the test split once."""
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer: Any = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    encoder = AutoModel.from_pretrained(checkpoint, local_files_only=True)
    model = _FineTuned(encoder, len(classes))
    index = {c: i for i, c in enumerate(classes)}

    def encode(texts: Sequence[str]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return out

    def predict(texts: Sequence[str]) -> list[int]:
        model.eval()
        preds: list[int] = []
        # Sort by length so each batch pads little; restore the order afterwards.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), eval_batch_size):
                idx = order[start : start + eval_batch_size]
                batch = encode([texts[i] for i in idx])
                preds.extend(model(batch["input_ids"], batch["attention_mask"]).argmax(1).tolist())
        restored = [0] * len(texts)
        for pos, i in enumerate(order):
            restored[i] = preds[pos]
        return restored

    optim = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": encoder_lr},
            {"params": model.head.parameters(), "lr": head_lr},
        ],
        weight_decay=0.01,
    )
    ytr = torch.tensor([index[y] for y in y_train])
    yva = [index[y] for y in y_val]
    generator = torch.Generator().manual_seed(seed)

    def batches() -> Iterator[torch.Tensor]:
        while True:  # a fresh permutation per pass over the examples
            yield from torch.randperm(len(ytr), generator=generator).split(batch_size)  # type: ignore[no-untyped-call]

    best: tuple[float, int, dict[str, torch.Tensor]] = (-1.0, 0, {})
    evaluations: list[list[float]] = []
    since_gain = 0
    step = 0
    stopped = "cap"
    for batch_idx in batches():
        model.train()
        batch = encode([train_texts[i] for i in batch_idx.tolist()])
        logits = model(batch["input_ids"], batch["attention_mask"])
        loss = nn.functional.cross_entropy(logits, ytr[batch_idx])
        optim.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optim.step()
        step += 1
        if step % schedule.eval_every == 0 or step == schedule.max_steps:
            score = _macro_f1(yva, predict(val_texts), len(classes))
            evaluations.append([step, score])
            log.info("fine-tune step %d: validation macro-F1 %.3f", step, score)
            if score > best[0]:
                best, since_gain = (score, step, copy.deepcopy(model.state_dict())), 0
            else:
                since_gain += 1
            if since_gain >= schedule.patience and step < schedule.max_steps:
                stopped = "early"
                break
        if step >= schedule.max_steps:
            break
    model.load_state_dict(best[2])
    pred = predict(test_texts)
    return Fitted(
        [classes[i] for i in pred],
        best[0],
        {
            "step": best[1],
            "steps_run": step,
            "stopped": stopped,  # "early" (patience ran out) or "cap" (max_steps reached)
            "max_steps": schedule.max_steps,
            "eval_every": schedule.eval_every,
            "patience": schedule.patience,
            "evaluations": evaluations,
            "steps_per_epoch": math.ceil(len(ytr) / batch_size),
            "max_length": max_length,
        },
    )
