"""Fine-tuning in optimiser steps: early stopping on validation macro-F1, the step cap, the
old fixed-epoch protocol as a schedule, and the chosen step reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.evaluate.classifiers import StepSchedule, fine_tune
from training.evaluate.data import EvaluationError

TEXTS = {
    "knee": "knee hip shoulder fracture left right",
    "chest": "chest pain shortness of breath heart rate",
}


def _data(k: int) -> tuple[list[str], list[str]]:
    texts = [f"{words} note {i}" for words in TEXTS.values() for i in range(k)]
    return texts, [label for label in TEXTS for _ in range(k)]


def _run(tiny_base: Path, schedule: StepSchedule, lr: float) -> dict[str, object]:
    train, y_train = _data(4)
    val, y_val = _data(3)
    fitted = fine_tune(
        tiny_base, train, y_train, val, y_val, val, sorted(TEXTS), seed=0, schedule=schedule,
        encoder_lr=lr, head_lr=lr, batch_size=4, max_length=16,
    )  # fmt: skip
    assert len(fitted.test_pred) == len(val)
    return fitted.chosen


def test_early_stopping_when_validation_stops_improving(tiny_base: Path) -> None:
    # lr 0: the model never changes, so validation macro-F1 never improves after step 1.
    chosen = _run(tiny_base, StepSchedule(max_steps=50, eval_every=2, patience=3), lr=0.0)
    assert chosen["stopped"] == "early"
    assert chosen["step"] == 2 and chosen["steps_run"] == 8  # evaluations at 2, 4, 6, 8
    assert [step for step, _ in chosen["evaluations"]] == [2, 4, 6, 8]  # type: ignore[attr-defined]


def test_the_cap_ends_a_run_that_keeps_going(tiny_base: Path) -> None:
    chosen = _run(tiny_base, StepSchedule(max_steps=5, eval_every=2, patience=10), lr=1e-3)
    assert chosen["stopped"] == "cap" and chosen["steps_run"] == 5
    evaluations = chosen["evaluations"]
    assert [step for step, _ in evaluations] == [2, 4, 5]  # type: ignore[attr-defined]
    best = max(score for _, score in evaluations)  # type: ignore[attr-defined]
    first_best = next(step for step, score in evaluations if score == best)  # type: ignore[attr-defined]
    assert chosen["step"] == first_best  # the best state, the earliest of ties, is restored


def test_the_old_epoch_protocol_is_a_schedule() -> None:
    # 80 examples, batch 16: 5 steps per epoch; 4 epochs = 20 steps, evaluated once per epoch,
    # and patience 4 over 4 evaluations never stops early.
    assert StepSchedule.epochs(4, 80, 16) == StepSchedule(20, 5, 4)
    with pytest.raises(EvaluationError, match="at least 1"):
        StepSchedule(max_steps=0)
