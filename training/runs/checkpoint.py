"""Periodic checkpoints: model + tokenizer (save_pretrained) and the trainer state to resume."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch

from training.runs.config import RunConfig, dump_config

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
CONFIG_FILE = "config.yaml"
_STEP = re.compile(r"^step-(\d+)$")


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    config: RunConfig,
    keep: int = 2,
) -> Path:
    """Write checkpoints/step-N atomically (temp dir + rename) and keep the newest `keep`."""
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"step-{step:06d}"
    staging = root / f".step-{step:06d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    torch.save(state, staging / STATE_FILE)
    (staging / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name))]
    return [p for _, p in sorted(found)]


def load_state(checkpoint: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(
        checkpoint / STATE_FILE, map_location="cpu", weights_only=True
    )
    return state
