"""`notespace adapt`: a trust's notes file in, a staged, evaluated bundle out.

Stages, each timed and each resumable (a stopped run continues with `--resume`):

1. data: read the file through the column map, clean, de-duplicate, drop excluded ids, split by
   patient/group (else by distinct text) into training notes and held-out notes;
2. train: the recipe (training/configs/recipes/default.yaml) on the training notes, with
   checkpoints (training/runs/loop.py);
3. weight: every mixing weight with the base exported and scored on the held-out notes,
   label-free (training/adapt/weight.py), and one chosen;
4. bundle: the chosen weight exported to --out and gate-checked (export parity, hashes, and
   the same held-out vectors as the bundle that was scored);
5. report (markdown + JSON + a plot), and with --register a staged registry row carrying it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.adapt.heldout import span_queries
from training.adapt.plan import (
    HELD_OUT_FRACTION,
    MAX_HELD_OUT_FRACTION,
    MAX_SCORED_NOTES,
    MIN_HELD_OUT_NOTES,
    MIN_TRAIN_NOTES,
    AdaptPlan,
)
from training.adapt.report import REPORT_MD
from training.adapt.weight import HeldOutScorer, WeightChoice, choose, score_weights
from training.data.corpus import load_corpus
from training.data.notes import Note
from training.errors import CorpusError, TrainingConfigError

log = logging.getLogger(__name__)

STATE_FILE = "adapt.json"
MIN_QUERIES = 10  # held-out notes long enough to cut a passage from


@dataclass
class StageTime:
    stage: str
    seconds: float
    tokens_per_s: float | None = None
    detail: str = ""


@dataclass
class AdaptResult:
    bundle: Path
    alpha: float
    reason: str
    report: dict[str, Any]
    stages: list[StageTime] = field(default_factory=list)


def _check_work_dir(plan: AdaptPlan, resume: bool) -> dict[str, Any]:
    state_path = plan.work_dir / STATE_FILE
    if not resume:
        if plan.work_dir.exists() and any(plan.work_dir.iterdir()):
            raise TrainingConfigError(
                f"{plan.work_dir} already holds a run: pass --resume to continue it, or choose "
                "another --work-dir"
            )
        plan.work_dir.mkdir(parents=True, exist_ok=True)
        fresh: dict[str, Any] = {"fingerprint": plan.fingerprint(), "stages": {}}
        state_path.write_text(json.dumps(fresh, indent=2) + "\n", encoding="utf-8")
        return fresh
    if not state_path.is_file():
        raise TrainingConfigError(f"--resume given but {plan.work_dir} holds no adapt run")
    state: dict[str, Any] = json.loads(state_path.read_text(encoding="utf-8"))
    if state.get("fingerprint") != plan.fingerprint():
        raise TrainingConfigError(
            f"cannot resume {plan.work_dir}: the file, columns, recipe or options differ from "
            "the run it holds"
        )
    return state


def _save_state(plan: AdaptPlan, state: dict[str, Any]) -> None:
    (plan.work_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")


def load_notes(plan: AdaptPlan) -> tuple[list[Note], list[Note], dict[str, Any]]:
    """(training notes, held-out notes, counts); refuses files too small to adapt on.

    The held-out share is 10 % of the groups, raised (to at most 30 %) for a small file so that
    at least MIN_HELD_OUT_NOTES notes are held out; counts["held_out_fraction"] records it.
    """
    fraction = HELD_OUT_FRACTION
    while True:
        corpus = load_corpus(plan.corpus(plan.exclude_ids, fraction))
        train, held = corpus.split.train, corpus.split.eval
        if len(held) >= MIN_HELD_OUT_NOTES or fraction >= MAX_HELD_OUT_FRACTION:
            break
        fraction = min(MAX_HELD_OUT_FRACTION, round(fraction + 0.05, 2))
    counts = {
        "held_out_fraction": fraction,
        "training_notes": len(train),
        "held_out_notes": len(held),
        "rows_dropped": corpus.rows_dropped,
        "excluded": corpus.excluded,
        "split_by": "group" if plan.columns.group else "distinct text",
    }
    if len(train) < MIN_TRAIN_NOTES or len(held) < MIN_HELD_OUT_NOTES:
        raise CorpusError(
            f"{plan.notes_file}: {len(train) + len(held)} usable notes after cleaning, "
            f"de-duplication and exclusion ({len(train)} to train, {len(held)} held out); adapt "
            f"needs at least {MIN_TRAIN_NOTES} to train and {MIN_HELD_OUT_NOTES} held out"
        )
    return train, held, counts


def adapt(
    plan: AdaptPlan,
    *,
    resume: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> AdaptResult:
    """Run (or resume) every stage; return the bundle written and the report."""
    from training.runs.loop import train as run_training
    from training.runs.prepare import resolve_base

    state = _check_work_dir(plan, resume)
    stages: list[StageTime] = []

    t0 = time.perf_counter()
    train_notes, held_out, counts = load_notes(plan)
    queries = span_queries(held_out[:MAX_SCORED_NOTES])
    if len(queries.queries) < MIN_QUERIES:
        raise CorpusError(
            f"only {len(queries.queries)} held-out notes are long enough (48+ words) to score "
            f"the mixing weight; adapt needs {MIN_QUERIES}: give a larger file"
        )
    stages.append(StageTime("data", time.perf_counter() - t0, None, f"{counts}"))
    say(
        f"data: {counts['training_notes']} notes to train on, {counts['held_out_notes']} held "
        f"out (split by {counts['split_by']}), {counts['rows_dropped']} rows dropped, "
        f"{counts['excluded']} excluded"
    )

    config = plan.run_config(plan.exclude_ids, counts["held_out_fraction"])
    final = config.output_dir / "final"
    t0 = time.perf_counter()
    if final.is_dir() and "train" in state["stages"]:
        training = state["stages"]["train"]
        say(f"train: done before ({final})")
    else:
        has_checkpoint = (config.output_dir / "checkpoints").is_dir()
        result = run_training(config, resume=resume and has_checkpoint, progress=progress)
        training = {
            "steps": result.steps,
            "notes_per_s": result.notes_per_s,
            "tokens_per_s": result.tokens_per_s,
            "seconds": result.train_seconds,
            "initial_eval_loss": result.initial_eval_loss,
            "final_eval_loss": result.final_eval_loss,
            "fraction_notes_used": result.fraction_notes_used,
            "precision": result.precision,
        }
        state["stages"]["train"] = training
        _save_state(plan, state)
    stages.append(
        StageTime("train", time.perf_counter() - t0, training["tokens_per_s"], f"{training}")
    )

    t0 = time.perf_counter()
    base_dir, base_name = resolve_base(config)
    choice = _choose_weight(plan, base_dir, final, queries, say)
    state["stages"]["weight"] = {"alpha": choice.alpha, "reason": choice.reason}
    _save_state(plan, state)
    stages.append(StageTime("weight", time.perf_counter() - t0, None, choice.reason))
    say(f"weight: alpha {choice.alpha:g} ({choice.reason})")

    t0 = time.perf_counter()
    bundle = _write_bundle(plan, base_dir, final, choice, queries)
    stages.append(StageTime("bundle", time.perf_counter() - t0))
    head = None
    if plan.columns.labelled:
        from training.adapt.labels import add_label_head

        t0 = time.perf_counter()
        head = add_label_head(plan, train_notes, held_out)
        stages.append(StageTime("head", time.perf_counter() - t0, None, head["field"]))
        say(f"head: {head['summary']}")
    report = _report(plan, counts, training, choice, base_name, stages, bundle)
    if head is not None:
        report["head"] = head
        from training.adapt.report import write_report

        write_report(report, plan.work_dir)
    say(f"bundle: {bundle} ({plan.name}@{plan.version}); report {plan.work_dir / REPORT_MD}")
    return AdaptResult(bundle, choice.alpha, choice.reason, report, stages)


def _alpha_dir(plan: AdaptPlan, alpha: float) -> Path:
    return plan.work_dir / "weights" / f"alpha-{alpha:g}"


def _choose_weight(
    plan: AdaptPlan,
    base_dir: Path,
    final: Path,
    queries: Any,
    say: Callable[[str], None],
) -> WeightChoice:
    from training.export import export_bundle
    from training.runs.interpolate import interpolate

    weights_dir = plan.work_dir / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)

    def bundle_at(alpha: float) -> Path:
        out = weights_dir / f"bundle-{alpha:g}"
        if (out / "manifest.json").is_file():
            return out
        model = base_dir if alpha == 0 else final if alpha == 1 else _alpha_dir(plan, alpha)
        if 0 < alpha < 1 and not model.is_dir():
            interpolate(base_dir, final, alpha, model)
        shutil.rmtree(out, ignore_errors=True)
        export_bundle(model, out, name=f"alpha-{alpha:g}", objective="interpolated")
        return out

    scorer = HeldOutScorer(queries, bundle_at(0.0), plan.work_dir / "cache", plan.threads)
    scores = score_weights(plan.alphas, bundle_at, scorer, weights_dir, say)
    return choose(scores)


def _write_bundle(
    plan: AdaptPlan, base_dir: Path, final: Path, choice: WeightChoice, queries: Any
) -> Path:
    """Export the chosen model to --out and check it serves the vectors that were scored."""
    from service.bundle import load_bundle
    from training.evaluate.models import ModelSource
    from training.evaluate.suite.embeddings import ModelEmbedder
    from training.export import export_bundle
    from training.runs.lineage import manifest_lineage, read_lineage

    alpha = choice.alpha
    model = base_dir if alpha == 0 else final if alpha == 1 else _alpha_dir(plan, alpha)
    lineage = dict(read_lineage(model) or read_lineage(final) or {})
    metrics = dict(lineage.get("eval_metrics") or {})
    metrics["adaptation"] = {
        "alpha": alpha,
        "reason": choice.reason,
        "weights": [asdict(s) for s in choice.scores],
    }
    lineage["eval_metrics"] = metrics
    export_bundle(
        model,
        plan.out,
        name=plan.name,
        version=plan.version,
        objective="adapted" if alpha > 0 else "base",
        lineage=manifest_lineage(lineage),
        overwrite=True,
    )
    load_bundle(plan.out)  # hashes verified
    scored = plan.work_dir / "weights" / f"bundle-{alpha:g}"
    vectors = []
    for bundle in (plan.out, scored):
        embedder = ModelEmbedder(
            ModelSource(bundle.name, bundle), plan.work_dir / "gate", "chunk", plan.threads
        )
        vectors.append(embedder.embed(queries.documents[:20]))
    cosine = float(np.min(np.sum(vectors[0] * vectors[1], axis=1)))
    if cosine < 0.9999:
        raise TrainingConfigError(
            f"the exported bundle's vectors differ from the scored ones (min cosine {cosine:.5f})"
        )
    return plan.out


def _report(
    plan: AdaptPlan,
    counts: dict[str, Any],
    training: dict[str, Any],
    choice: WeightChoice,
    base_name: str,
    stages: list[StageTime],
    bundle: Path,
) -> dict[str, Any]:
    from training.adapt.report import write_report

    report = {
        "model": f"{plan.name}@{plan.version}",
        "bundle": str(bundle),
        "notes_file": plan.notes_file.name,
        "columns": asdict(plan.columns),
        "base_model": base_name,
        "recipe": plan.recipe.name,
        "data": counts,
        "training": training,
        "weight": {
            "alpha": choice.alpha,
            "reason": choice.reason,
            "scores": [asdict(s) for s in choice.scores],
        },
        "stages": [asdict(s) for s in stages],
    }
    write_report(report, plan.work_dir)
    return report
