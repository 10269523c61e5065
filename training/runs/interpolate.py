"""Weight-space interpolation of an adapted encoder with its base (WiSE-FT).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): theta = (1 - alpha) x
theta_base + alpha x theta_adapted keeps much of the adaptation's in-domain gain while
recovering the base's out-of-domain behaviour; alpha = 1 is the adapted model, 0 the base.
Only the encoder is mixed (what the bundle serves); the adapted model's MLM head is kept.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.errors import TrainingConfigError
from training.runs.lineage import read_lineage, write_lineage
from training.runs.model import load_encoder, save_model

ST_CONFIG = "sentence_bert_config.json"


def mix_state(
    base: dict[str, torch.Tensor], adapted: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """(1 - alpha) x base + alpha x adapted, tensor by tensor; the two must match exactly."""
    if not 0.0 <= alpha <= 1.0:
        raise TrainingConfigError(f"alpha must be in [0, 1], not {alpha}")
    if base.keys() != adapted.keys():
        missing = sorted(base.keys() ^ adapted.keys())[:5]
        raise TrainingConfigError(f"the two encoders differ in their weights: {missing}")
    mixed = {}
    for name, theirs in adapted.items():
        ours = base[name]
        if ours.shape != theirs.shape:
            raise TrainingConfigError(
                f"weight {name} has shape {tuple(ours.shape)} in the base but "
                f"{tuple(theirs.shape)} in the adapted model: not the same architecture"
            )
        if not theirs.is_floating_point():
            mixed[name] = theirs.clone()  # integer buffers (position ids) are not weights
            continue
        mixed[name] = torch.lerp(ours.float(), theirs.float(), alpha).to(theirs.dtype)
    return mixed


def interpolate(
    base_dir: Path,
    adapted_dir: Path,
    alpha: float,
    out_dir: Path,
    *,
    selection: dict[str, Any] | None = None,
) -> Path:
    """Write the interpolated model to out_dir (a Hugging Face directory `export` reads);
    `selection` (how alpha was chosen) goes into its lineage beside alpha."""
    base = load_encoder(base_dir)
    adapted = load_encoder(adapted_dir)
    mixed = mix_state(base.encoder.state_dict(), adapted.encoder.state_dict(), alpha)
    adapted.encoder.load_state_dict(mixed)
    if out_dir.exists():
        raise TrainingConfigError(f"{out_dir} already exists: choose another --out")
    staging = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_model(adapted, staging, head_trained=False)  # mixing trains nothing
    for name in (ST_CONFIG, "config.yaml"):
        if (adapted_dir / name).is_file():
            shutil.copyfile(adapted_dir / name, staging / name)
    lineage: dict[str, Any] = read_lineage(adapted_dir) or {}
    config = dict(lineage.get("training_config") or {})
    config["interpolation"] = {
        "alpha": alpha,
        "base": str(base_dir),
        "adapted": str(adapted_dir),
        **({"selection": selection} if selection else {}),
    }
    lineage["training_config"] = config
    lineage.setdefault("objective", "interpolated")
    write_lineage(staging, lineage)
    staging.rename(out_dir)
    return out_dir


def base_of(adapted_dir: Path) -> Path:
    """The base checkpoint a training run started from (its saved config), as a directory."""
    from training.runs.config import load_config
    from training.runs.prepare import resolve_base

    config_file = adapted_dir / "config.yaml"
    if not config_file.is_file():
        raise TrainingConfigError(
            f"{adapted_dir} has no config.yaml (not a `notespace train` output): pass --base"
        )
    directory, _ = resolve_base(load_config(config_file))
    return directory


@dataclass(frozen=True)
class AlphaChoice:
    """The chosen alpha and, per candidate, the paired validation differences to the base."""

    alpha: float
    table: dict[float, dict[str, float]]  # alpha -> task -> primary-metric difference
    reason: str


def pick_alpha(table: dict[float, dict[str, float]], max_drop: float) -> AlphaChoice:
    """The alpha with the best mean validation difference among those that lose no more than
    `max_drop` on any task; the base itself (alpha 0) when every candidate loses more."""
    feasible = {a: d for a, d in table.items() if min(d.values()) >= -max_drop}
    if not feasible:
        worst = {a: min(d, key=lambda t: d[t]) for a, d in table.items()}
        listed = ", ".join(f"{a:g}: {t} {table[a][t]:+.4f}" for a, t in sorted(worst.items()))
        return AlphaChoice(0.0, table, f"every alpha loses more than {max_drop} ({listed})")
    # ties go to the smaller alpha: closer to the base for the same validation score
    best = max(sorted(feasible), key=lambda a: statistics.fmean(feasible[a].values()))
    mean = statistics.fmean(feasible[best].values())
    return AlphaChoice(
        best,
        table,
        f"best mean validation difference ({mean:+.4f}) "
        f"among {len(feasible)} of {len(table)} that lose <= {max_drop} anywhere",
    )


def choose_alpha(
    base_dir: Path,
    adapted_dir: Path,
    alphas: Sequence[float],
    suite: str,
    data_root: Path | None,
    work_dir: Path,
    *,
    max_drop: float,
    threads: int = 2,
    cache_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> AlphaChoice:
    """Score each alpha on the suite's *validation* data (test data is never embedded)."""
    from training.evaluate.suite.runner import RunConfig as SuiteRun
    from training.evaluate.suite.runner import run_suite
    from training.evaluate.suite.summary import primary_diff

    candidates = sorted({float(a) for a in alphas if a > 0})
    if not candidates:
        raise TrainingConfigError("give at least one alpha above 0")
    specs = ["base=" + str(base_dir)]
    for alpha in candidates:
        target = adapted_dir if alpha == 1.0 else work_dir / f"alpha-{alpha:g}"
        if alpha != 1.0 and not target.exists():
            interpolate(base_dir, adapted_dir, alpha, target)
        specs.append(f"alpha-{alpha:g}={target}")
    report = run_suite(
        specs,
        suite,
        SuiteRun(
            data_root=data_root,
            threads=threads,
            baseline="base",
            cache_dir=cache_dir,
            progress=progress,
        ),
        work_dir / "validation",
        split="val",
    )
    table: dict[float, dict[str, float]] = {}
    for alpha in candidates:
        label = f"alpha-{alpha:g}"
        diffs = {name: primary_diff(task, label) for name, task in report["tasks"].items()}
        table[alpha] = {name: float(d["mean"]) for name, d in diffs.items() if d is not None}
    return pick_alpha(table, max_drop)
