"""Training-side commands of the `notespace` CLI (registered through an entry point).

Heavy imports (torch, transformers) happen inside the commands, so `notespace serve` stays
usable in the lean service image where they are not installed.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from training.export import Precision
    from training.runs.config import Objective


class ExportPrecision(StrEnum):
    FP32 = "fp32"
    INT8 = "int8"
    FP16 = "fp16"


class GateSplit(StrEnum):
    TEST = "test"
    VAL = "val"


_PRECISIONS: dict[ExportPrecision, Precision] = {
    ExportPrecision.FP32: "fp32",
    ExportPrecision.INT8: "int8",
    ExportPrecision.FP16: "fp16",
}


def export(
    out: Annotated[Path, typer.Option(help="bundle directory to write")],
    base: Annotated[
        Path | None,
        typer.Option(help="local Hugging Face encoder directory [default: all-MiniLM-L6-v2]"),
    ] = None,
    name: Annotated[str | None, typer.Option(help="model name in the manifest")] = None,
    version: Annotated[str, typer.Option(help="model version in the manifest")] = "1",
    objective: Annotated[str, typer.Option(help="training objective, for lineage")] = "base",
    max_tokens: Annotated[
        int | None, typer.Option(help="tokens per window [default: the model's own]")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing bundle")] = False,
    register: Annotated[
        bool, typer.Option(help="add the bundle to the model registry (staged)")
    ] = False,
    precision: Annotated[
        ExportPrecision,
        typer.Option(
            help="fp32; int8 (CPU serving: static with --calibration-notes, else dynamic); "
            "fp16 (GPU serving). int8/fp16 are refused when they miss the quality gate "
            "against fp32"
        ),
    ] = ExportPrecision.FP32,
    quality_notes: Annotated[
        Path | None,
        typer.Option(
            help="real notes for the int8/fp16 quality gate: CSV (text or transcription "
            "column), JSONL (text) or one note per line; int8 needs at least 20"
        ),
    ] = None,
    calibration_notes: Annotated[
        Path | None,
        typer.Option(
            help="static int8: the trust's notes (CSV or JSONL, with a note_id/id column for "
            "--held-out-ids) that set the activation scales and choose the float layers"
        ),
    ] = None,
    held_out_ids: Annotated[
        Path | None,
        typer.Option(
            help="static int8: ids (one a line) of --calibration-notes never used to calibrate; "
            "without --quality-notes the gate runs on them (e.g. the suite's test ids)"
        ),
    ] = None,
    calibration_windows: Annotated[
        int, typer.Option(help="static int8: calibration windows, at their real lengths")
    ] = 300,
    selection_margin: Annotated[
        float,
        typer.Option(
            help="static int8: keep layers in float until the selection notes' top-10 overlap "
            "clears the gate by this much (more: more float layers, closer to fp32, slower)"
        ),
    ] = 0.01,
    qat_steps: Annotated[
        int,
        typer.Option(
            help="static int8: steps of quantisation-aware distillation from the fp32 model "
            "on the calibration notes before calibrating (0: post-training only)"
        ),
    ] = 0,
) -> None:
    """Export a local encoder to an ONNX model bundle, refusing one that fails parity."""
    try:
        from training.export import ExportError, export_bundle, read_quality_notes
    except ImportError as exc:
        raise typer.BadParameter(
            f"export needs the training extra (pip install 'notespace[training]'): {exc}"
        ) from exc
    from training.errors import TrainingError
    from training.runs.lineage import manifest_lineage, read_lineage

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        # A directory written by `notespace train` carries its lineage into the manifest.
        lineage = read_lineage(base) if base is not None else None
    except TrainingError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if lineage is not None and base is not None:
        if objective == "base":
            objective = str(lineage.get("objective") or objective)
        # RUN_DIR/final would otherwise be named "final": name it after the run directory.
        name = name or re.sub(r"[^A-Za-z0-9._-]+", "-", base.resolve().parent.name) or None
    try:
        quality_texts = read_quality_notes(quality_notes) if quality_notes else None
        int8_plan = None
        if calibration_notes is not None:
            if precision is not ExportPrecision.INT8:
                raise typer.BadParameter(
                    "--calibration-notes is for --precision int8", param_hint="--precision"
                )
            int8_plan, held_out = _static_int8_plan(
                calibration_notes, held_out_ids, calibration_windows, selection_margin
            )
            quality_texts = quality_texts or held_out
        common: dict[str, Any] = {
            "name": name,
            "version": version,
            "objective": objective,
            "max_tokens": max_tokens,
            "lineage": manifest_lineage(lineage) if lineage is not None else None,
            "overwrite": overwrite,
        }
        if int8_plan is not None:
            from training.quantize.pipeline import export_static_int8
            from training.quantize.qat import QatConfig

            result = export_static_int8(
                base,
                out,
                int8_plan,
                quality_texts or [],
                qat=QatConfig(steps=qat_steps) if qat_steps > 0 else None,
                **common,
            )
        else:
            result = export_bundle(
                base,
                out,
                precision=_PRECISIONS[precision],
                quality_texts=quality_texts,
                **common,
            )
    except ExportError as exc:
        typer.secho(f"export failed: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    m = result.manifest
    parity = m.parity
    typer.echo(
        f"wrote {result.bundle_dir}: {m.ref}, dim {m.embedding_dim}, "
        f"{m.max_tokens} tokens/window"
        + (
            f", parity max|diff| {parity.max_abs_diff:.1e} min cos {parity.min_cosine:.6f}"
            if parity
            else ""
        )
    )
    check = m.precision_check
    if check is not None:
        typer.echo(
            f"{check.precision}: min cosine to fp32 {check.min_cosine:.5f} (mean "
            f"{check.mean_cosine:.5f}) on {check.notes} notes, top-{check.neighbour_k} "
            f"neighbour overlap {check.neighbour_overlap}"
            + (f", measured on {check.measured_on}" if check.measured_on else "")
        )
    if m.quantization is not None and m.quantization.scheme == "static":
        kept = m.quantization.float_layers
        typer.echo(f"static int8: {len(kept)} weight MatMuls kept in float: {', '.join(kept)}")
    if register:
        import getpass

        from service.bundle import load_bundle
        from service.cli.common import open_registry

        row = open_registry().register(load_bundle(result.bundle_dir), getpass.getuser())
        typer.echo(f"registered {row.ref} (id {row.id}, {row.status})")


def _static_int8_plan(
    notes_file: Path, held_out_ids: Path | None, windows: int, selection_margin: float
) -> tuple[Any, list[str]]:
    """The static int8 plan from the trust's notes file, and the held-out notes (by id)."""
    from training.quantize.calibration import CalibrationError, read_ids, read_notes
    from training.quantize.export_int8 import StaticInt8Plan
    from training.quantize.static_int8 import StaticInt8Recipe

    try:
        ids = read_ids(held_out_ids) if held_out_ids is not None else set()
        notes = read_notes(notes_file, exclude_ids=ids)
        held_out = read_notes(notes_file, only_ids=ids) if ids else []
    except (CalibrationError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--calibration-notes") from exc
    source = notes_file.name + (f" minus the ids in {held_out_ids.name}" if held_out_ids else "")
    recipe = StaticInt8Recipe(
        calibration_windows=windows, selection_margin_overlap=selection_margin
    )
    return StaticInt8Plan(notes=notes, source=source, recipe=recipe), held_out


ConfigOption = Annotated[Path, typer.Option("--config", help="run YAML (see training/configs/)")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="continue from the newest checkpoint in output_dir")
]
ProgressOption = Annotated[bool, typer.Option(help="show a progress bar")]


def _train(objective: Objective, config_path: Path, resume: bool, progress: bool) -> None:
    try:
        from training.errors import TrainingError
        from training.runs.config import load_config
        from training.runs.loop import train
    except ImportError as exc:
        raise typer.BadParameter(
            f"train needs the training extra (pip install 'notespace[training]'): {exc}"
        ) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(config_path, objective=objective)
        result = train(config, resume=resume, progress=progress)
    except TrainingError as exc:
        typer.secho(f"train {objective} failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"wrote {result.final_dir}: {result.steps} steps, held-out loss "
        f"{result.initial_eval_loss:.4f} -> {result.final_eval_loss:.4f}, "
        f"{result.notes_per_s:.2f} notes/s, {result.tokens_per_s:.0f} tokens/s, "
        f"{100 * result.fraction_notes_used:.1f}% of training notes used"
    )


def train_mlm(
    config: ConfigOption, resume: ResumeOption = False, progress: ProgressOption = True
) -> None:
    """Continued masked-language-model pre-training."""
    _train("mlm", config, resume, progress)


def train_declutr(
    config: ConfigOption, resume: ResumeOption = False, progress: ProgressOption = True
) -> None:
    """DeCLUTR contrastive span pre-training (+ MLM on anchors)."""
    _train("declutr", config, resume, progress)


def train_category(
    config: ConfigOption, resume: ResumeOption = False, progress: ProgressOption = True
) -> None:
    """MLM + note-category objective (linear head or SupCon)."""
    _train("category", config, resume, progress)


def train_interpolate(
    model: Annotated[Path, typer.Option(help="adapted model (a `notespace train` final/ dir)")],
    out: Annotated[Path, typer.Option(help="directory to write the interpolated model to")],
    alpha: Annotated[
        list[float] | None,
        typer.Option(
            help="weight of the adapted model (1 = adapted, 0 = base); repeat it with --suite "
            "to choose on validation data [default with --suite: 0.25 0.5 0.75 1]",
            min=0,
            max=1,
        ),
    ] = None,
    base: Annotated[
        Path | None, typer.Option(help="base model directory [default: the run's own base]")
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(help="evaluation suite (name or YAML) whose validation data chooses alpha"),
    ] = None,
    data_root: Annotated[
        Path | None, typer.Option(help="folder the suite's relative data paths start from")
    ] = None,
    max_drop: Annotated[
        float, typer.Option(help="largest validation loss allowed on any task (primary metric)")
    ] = 0.005,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    cache_dir: Annotated[
        Path | None, typer.Option(help="embedding cache shared with `evaluate --cache-dir`")
    ] = None,
) -> None:
    """Mix an adapted encoder's weights with its base's (WiSE-FT): keeps what the base knew.

    With --suite, every alpha is scored on the suite's validation data (never its test data)
    and the best one that loses at most --max-drop on every task is written to --out.
    """
    try:
        from training.errors import TrainingError
        from training.runs.interpolate import base_of, choose_alpha, interpolate
    except ImportError as exc:
        raise typer.BadParameter(
            f"interpolate needs the training extra (pip install 'notespace[training]'): {exc}"
        ) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        base_dir = base or base_of(model)
        if suite is None:
            if not alpha or len(alpha) != 1:
                raise TrainingError("give one --alpha, or several with --suite to choose one")
            chosen, selection = alpha[0], None
        else:
            choice = choose_alpha(
                base_dir,
                model,
                alpha or [0.25, 0.5, 0.75, 1.0],
                suite,
                data_root,
                out.with_name(f"{out.name}.selection"),
                max_drop=max_drop,
                threads=threads,
                cache_dir=cache_dir,
                progress=typer.echo,
            )
            for a, diffs in sorted(choice.table.items()):
                cells = ", ".join(f"{t} {d:+.4f}" for t, d in diffs.items())
                typer.echo(f"alpha {a:g}: {cells}")
            typer.echo(f"chose alpha {choice.alpha:g}: {choice.reason}")
            chosen = choice.alpha
            selection = {
                "suite": suite,
                "split": "val",
                "max_drop": max_drop,
                "reason": choice.reason,
                "val_diffs": {f"{a:g}": d for a, d in choice.table.items()},
            }
        written = interpolate(base_dir, model, chosen, out, selection=selection)
    except TrainingError as exc:
        typer.secho(f"interpolate failed: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {written}: alpha {chosen:g} (1 = {model}, 0 = its base)")


def int8_gate(
    int8: Annotated[Path, typer.Option(help="the int8 bundle (not yet registered)")],
    fp32: Annotated[Path, typer.Option(help="the fp32 bundle it was made from")],
    data_root: Annotated[Path, typer.Option(help="the suite's data folder, e.g. ../shared/data")],
    out: Annotated[Path, typer.Option(help="folder for the suite's report")],
    suite: Annotated[str, typer.Option(help="evaluation suite (name or YAML)")] = "int8-gate",
    margin: Annotated[
        float, typer.Option(help="allowed macro-F1 shortfall (0.005: half a point)")
    ] = 0.005,
    threads: Annotated[int, typer.Option(help="CPU threads")] = 2,
    cache_dir: Annotated[Path | None, typer.Option(help="suite embedding cache")] = None,
    split: Annotated[
        GateSplit,
        typer.Option(
            help="test: the gate, recorded in the manifest; val: to choose export settings "
            "(e.g. --selection-margin) without looking at test, recorded nowhere"
        ),
    ] = GateSplit.TEST,
) -> None:
    """The int8 gate's downstream part: the int8 bundle against its fp32 bundle on every task of
    the suite by paired intervals, written to the int8 manifest; exit 1 when some task is worse
    than fp32 by more than --margin with 95 % confidence."""
    from training.quantize.downstream import run_downstream_gate

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    check = run_downstream_gate(
        int8,
        fp32,
        out,
        data_root=data_root,
        suite=suite,
        margin=margin,
        threads=threads,
        cache_dir=cache_dir,
        split=split.value,
    )
    for task in check["tasks"]:
        typer.echo(
            f"{task['task']}: {task['metric']} fp32 {task['fp32']:.4f}, int8 {task['int8']:.4f} "
            f"({task['difference']:+.4f} [{task['ci'][0]:+.4f}, {task['ci'][1]:+.4f}], "
            f"{task['verdict']})" + ("" if task["within_margin"] else "  WORSE BEYOND THE MARGIN")
        )
    where = (
        f"recorded in {int8 / 'manifest.json'}"
        if split is GateSplit.TEST
        else "validation split: recorded nowhere"
    )
    if not check["passed"]:
        verdict = "do not register this bundle" if split is GateSplit.TEST else where
        typer.secho(f"downstream gate failed (margin {margin}): {verdict}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"downstream gate passed; {where}")


def register(app: typer.Typer) -> None:
    from training.adapt.cli import adapt

    app.command(name="adapt")(adapt)
    app.command(name="export")(export)
    app.command(name="int8-gate")(int8_gate)
    train_app = typer.Typer(
        help="Domain-adaptive pre-training of an encoder.", no_args_is_help=True
    )
    train_app.command(name="mlm")(train_mlm)
    train_app.command(name="declutr")(train_declutr)
    train_app.command(name="category")(train_category)
    train_app.command(name="interpolate")(train_interpolate)
    app.add_typer(train_app, name="train")
    from training.evaluate.cli import register_commands as register_evaluate

    register_evaluate(app)
