"""The training loop: prepare everything (failing early), then step, evaluate, checkpoint, save."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from training.data.notes import fingerprint
from training.errors import TrainingConfigError
from training.runs.checkpoint import (
    CONFIG_FILE,
    list_checkpoints,
    load_state,
    save_checkpoint,
)
from training.runs.config import RunConfig, dump_config
from training.runs.lineage import write_lineage
from training.runs.model import load_encoder, pick_device, save_model
from training.runs.prepare import Prepared, prepare
from training.runs.runner import (
    Runner,
    build_optimizer,
    micro_batch_items,
    step_generator,
)

log = logging.getLogger(__name__)

# Linear warm-up to the peak rate, then linear decay to 0 at max_steps (transformers' own,
# typed here: transformers ships it unannotated).
_linear_with_warmup: Callable[[torch.optim.Optimizer, int, int], LambdaLR] = (
    get_linear_schedule_with_warmup
)

FINAL = "final"
HEAD_FILE = "category_head.pt"
CATEGORIES_FILE = "categories.json"
METRICS_FILE = "metrics.jsonl"
TEST_IDS_FILE = "test_note_ids.txt"
ST_CONFIG = "sentence_bert_config.json"
# Resuming with a different value of these would silently train a different run.
_RESUME_FIXED = ("objective", "base_model", "corpus", "seed", "batch_size", "grad_accum_steps")


@dataclass
class RunResult:
    run_dir: Path
    final_dir: Path
    steps: int
    initial_eval_loss: float
    final_eval_loss: float
    notes_per_s: float
    tokens_per_s: float
    train_seconds: float
    fraction_notes_used: float
    precision: str = "fp32"
    mlm_weight: float = 1.0
    history: list[dict[str, float]] = field(default_factory=list)


def _check_resume(config: RunConfig, run_dir: Path, resume: bool) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    if not resume:
        if checkpoints or (run_dir / FINAL).exists():
            raise TrainingConfigError(
                f"{run_dir} already holds a run: pass --resume or choose another output_dir"
            )
        return None
    if not checkpoints:
        raise TrainingConfigError(f"--resume given but {run_dir} has no checkpoint")
    saved = (checkpoints[-1] / CONFIG_FILE).read_text(encoding="utf-8")
    import yaml

    previous = yaml.safe_load(saved)
    current = config.model_dump(mode="json")
    changed = [k for k in _RESUME_FIXED if previous.get(k) != current.get(k)]
    if changed:
        raise TrainingConfigError(
            f"cannot resume {run_dir} with changed setting(s): {', '.join(changed)}"
        )
    return checkpoints[-1]


def _accumulate(
    runner: Runner, step: int, scaler: torch.amp.GradScaler
) -> tuple[float, dict[str, float], float, int]:
    """Forward + backward over the step's micro-batches: (loss, loss parts, notes, tokens)."""
    config, train_items = runner.config, runner.prepared.train
    loss_sum, notes, tokens = 0.0, 0.0, 0
    parts_sum: dict[str, float] = {}
    for micro in range(config.grad_accum_steps):
        index = step * config.grad_accum_steps + micro
        items = micro_batch_items(train_items.num_items, config.batch_size, config.seed, index)
        batch = train_items.build(items, step_generator(config.seed, 0, index)).to(runner.device)
        loss, parts = runner.backward(
            batch, lambda term: scaler.scale(term / config.grad_accum_steps)
        )
        loss_sum += loss / config.grad_accum_steps
        for key, value in parts.items():
            parts_sum[key] = parts_sum.get(key, 0.0) + value / config.grad_accum_steps
        notes += batch.notes
        tokens += batch.tokens
    return loss_sum, parts_sum, notes, tokens


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.fields[objective]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )
    return progress


def train(config: RunConfig, *, resume: bool = False, progress: bool = True) -> RunResult:
    """Run (or resume) a training run; return where it wrote and what it measured."""
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    run_dir = config.output_dir
    from_checkpoint = _check_resume(config, run_dir, resume)
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    prepared = prepare(config)
    if from_checkpoint is not None:
        prepared.model = load_encoder(from_checkpoint)
        if prepared.head is not None:
            state = load_state(from_checkpoint)
            prepared.head.load_state_dict(state["head"])
    runner = Runner(config, prepared, device)
    optimizer = build_optimizer(runner, config)
    scheduler = _linear_with_warmup(optimizer, config.optim.warmup_steps, config.max_steps)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=runner.use_amp and runner.amp_dtype == torch.float16
    )
    step = 0
    history: list[dict[str, float]] = []
    if from_checkpoint is not None:
        state = load_state(from_checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, history = int(state["step"]), list(state["history"])
        log.info("resumed from %s at step %d", from_checkpoint, step)
        # Steps logged after this checkpoint were lost with the crash: rewrite the log to match.
        (run_dir / METRICS_FILE).write_text(
            "".join(json.dumps(h) + "\n" for h in history if h.get("step", 0) > 0),
            encoding="utf-8",
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
    (run_dir / TEST_IDS_FILE).write_text(
        "".join(f"{n.note_id}\n" for n in prepared.test_notes), encoding="utf-8"
    )
    log.info(
        "%s: %d train items, %d eval items, %.1f%% of training notes used",
        config.objective,
        prepared.train.num_items,
        prepared.eval.num_items,
        100 * prepared.fraction_used,
    )
    initial = next((h["eval_loss"] for h in history if h.get("step") == 0), None)
    if initial is None:
        initial = runner.eval_loss()
        history.append({"step": 0, "eval_loss": initial})
        log.info("step 0 eval loss %.4f", initial)
    seconds, notes_seen, tokens_seen = 0.0, 0.0, 0
    runner.train_mode(True)
    params = list(runner.parameters())
    # Only a new MLM head is warmed up on its own; a trained one needs no warm-up.
    head_warmup = config.mlm.head_warmup_steps if prepared.model.fresh_head else 0
    log.info(
        "precision %s, MLM weight %g%s, distillation weight %g",
        runner.precision,
        prepared.mlm_weight,
        f", MLM head warm-up {head_warmup} steps" if head_warmup else "",
        config.distill.weight,
    )
    with _progress(progress) as bar:
        task = bar.add_task(
            "train", total=config.max_steps, completed=step, objective=config.objective, stats=""
        )
        while step < config.max_steps:
            started = time.perf_counter()
            torch.manual_seed(config.seed + step)  # dropout, reproducible across a resume
            runner.encoder_trainable(step >= head_warmup)
            loss_sum, parts_sum, notes, tokens = _accumulate(runner, step, scaler)
            notes_seen += notes
            tokens_seen += tokens
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.optim.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            seconds += time.perf_counter() - started
            stats = (
                f"loss {loss_sum:.3f}  {notes_seen / seconds:.1f} notes/s  "
                f"{tokens_seen / seconds:.0f} tok/s"
            )
            bar.update(task, completed=step, stats=stats)
            record: dict[str, float] = {"step": step, "loss": loss_sum, **parts_sum}
            if step % config.log_every == 0:
                log.info("step %d/%d %s", step, config.max_steps, stats)
            if step % config.eval_every == 0 or step == config.max_steps:
                record["eval_loss"] = runner.eval_loss()
                log.info("step %d eval loss %.4f", step, record["eval_loss"])
            history.append(record)
            with (run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                state = {
                    "step": step,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "head": prepared.head.state_dict() if prepared.head is not None else {},
                }
                save_checkpoint(
                    run_dir,
                    step,
                    prepared.model.model,
                    prepared.model.tokenizer,
                    state,
                    config,
                    keep=config.keep_checkpoints,
                )
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    final_loss = evals[-1]
    result = RunResult(
        run_dir=run_dir,
        final_dir=run_dir / FINAL,
        steps=step,
        initial_eval_loss=initial,
        final_eval_loss=final_loss,
        notes_per_s=notes_seen / seconds if seconds else 0.0,
        tokens_per_s=tokens_seen / seconds if seconds else 0.0,
        train_seconds=seconds,
        fraction_notes_used=prepared.fraction_used,
        precision=runner.precision,
        mlm_weight=prepared.mlm_weight,
        history=history,
    )
    _save_final(config, prepared, result)
    return result


def _save_final(config: RunConfig, prepared: Prepared, result: RunResult) -> None:
    final = result.final_dir
    final.mkdir(parents=True, exist_ok=True)
    save_model(prepared.model, final, head_trained=prepared.mlm_weight > 0)
    (final / CONFIG_FILE).write_text(dump_config(config), encoding="utf-8")
    st_config = prepared.base_dir / ST_CONFIG
    if st_config.is_file():
        # Keeps the base's window length (MiniLM: 256) when export reads the trained model.
        shutil.copyfile(st_config, final / ST_CONFIG)
    if prepared.head is not None:
        torch.save(prepared.head.state_dict(), final / HEAD_FILE)
    if prepared.categories:
        (final / CATEGORIES_FILE).write_text(
            json.dumps(prepared.categories) + "\n", encoding="utf-8"
        )
    write_lineage(
        final,
        {
            "objective": config.objective,
            "base_model": prepared.base_name,
            "data_fingerprint": fingerprint(prepared.train_notes),
            "training_config": config.model_dump(mode="json"),
            "eval_metrics": {
                "initial_eval_loss": result.initial_eval_loss,
                "final_eval_loss": result.final_eval_loss,
                "steps": result.steps,
                "train_notes": len(prepared.train_notes),
                "fraction_notes_used": result.fraction_notes_used,
                "notes_per_s": result.notes_per_s,
                "tokens_per_s": result.tokens_per_s,
                "train_seconds": result.train_seconds,
                "precision": result.precision,
                "mlm_weight": result.mlm_weight,
            },
        },
    )
