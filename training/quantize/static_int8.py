"""Static int8 for a bundle's graph: NNCF post-training quantisation with SmoothQuant on the
trust's notes, and the weight MatMuls that cost the most neighbours kept in float.

The layers to keep are chosen by measurement, not by guess: each weight MatMul in turn is put
back to fp32 (input and weight) in the all-int8 graph and the neighbour overlap and cosine to
fp32 measured on selection notes; the layers with the largest gain are kept in float, one at a time,
until the selection notes clear the gate with a margin. The final graph is quantised again with
those layers in NNCF's ignored scope, so they keep their fp32 weights too. The graph stays ONNX
(QuantizeLinear / DequantizeLinear pairs): OpenVINO runs it on int8 dot-product units, ONNX
Runtime runs it anywhere.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.quantize.calibration import Window
from training.quantize.vectors import GraphRunner, Vectors, cosines

log = logging.getLogger(__name__)

METHOD = "nncf-ptq-smoothquant"


@dataclass(frozen=True)
class StaticInt8Recipe:
    """The knobs; defaults measured on all-MiniLM-L6-v2 and MTSamples (docs/benchmarks.md)."""

    calibration_windows: int = 300
    smooth_quant_alpha: float = 0.95
    # Keep layers in float until the selection notes clear the gate by this much: the gate's
    # own notes are unseen, and overlap varies by about a point between note samples.
    selection_margin_overlap: float = 0.01
    selection_margin_cosine: float = 0.002
    max_float_layers: int = 12  # each costs speed; beyond this the recipe gives up
    # Selection notes scored per candidate graph (one graph per weight MatMul, and per step).
    max_selection_notes: int = 250
    threads: int = 2

    def settings(self) -> dict[str, Any]:
        return {
            "calibration_windows": self.calibration_windows,
            "smooth_quant_alpha": self.smooth_quant_alpha,
            "selection_margin_overlap": self.selection_margin_overlap,
            "selection_margin_cosine": self.selection_margin_cosine,
            "max_float_layers": self.max_float_layers,
            "max_selection_notes": self.max_selection_notes,
            "preset": "mixed (symmetric weights per channel, asymmetric activations per tensor)",
        }


@dataclass
class Selection:
    float_layers: list[str]
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def weight_matmuls(model: Any) -> list[str]:
    """Names of the MatMuls whose second input is a constant 2-d weight, in graph order."""
    from onnx import numpy_helper

    shapes = {init.name: numpy_helper.to_array(init).shape for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and len(shapes.get(node.input[1], ())) == 2
    ]


def nncf_quantize(
    fp32_model: Path,
    windows: list[Window],
    recipe: StaticInt8Recipe,
    float_layers: list[str],
    out: Path,
) -> None:
    """NNCF PTQ (transformer preset, SmoothQuant on MatMuls), `float_layers` left out."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
    )

    feeds = [
        {"input_ids": w[None, :], "attention_mask": np.ones((1, len(w)), dtype=np.int64)}
        for w in windows
    ]
    model = nncf.quantize(
        onnx.load(str(fp32_model)),
        nncf.Dataset(feeds),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(feeds),
        ignored_scope=nncf.IgnoredScope(names=float_layers) if float_layers else None,
        advanced_parameters=AdvancedQuantizationParameters(
            smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=recipe.smooth_quant_alpha)
        ),
    )
    onnx.save(model, str(out))


def with_float_layers(quantised: Any, fp32: Any, layers: list[str]) -> Any:
    """A copy of the QDQ graph in which `layers` run as in the fp32 graph: each reads its
    original input tensor (before SmoothQuant's scaling and the quantiser, names kept by NNCF)
    and its original fp32 weight. The cheap stand-in for re-quantising without them (only the
    bias correction NNCF folded into the next Add stays)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(quantised)
    wanted = set(layers)
    original = {node.name: list(node.input) for node in fp32.graph.node if node.name in wanted}
    weights = {init.name: init for init in fp32.graph.initializer}
    for node in copy.graph.node:
        if node.name not in original:
            continue
        source, weight = original[node.name]
        float_weight = onnx.TensorProto()
        float_weight.CopyFrom(weights[weight])
        float_weight.name = f"{weight}/float"
        copy.graph.initializer.append(float_weight)
        node.input[0], node.input[1] = source, float_weight.name
    return copy


Score = dict[str, float]


def score_vectors(reference: Vectors, candidate: Vectors, k: int) -> Score:
    from training.export import neighbour_overlap

    cos = cosines(reference, candidate)
    return {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "neighbour_overlap": neighbour_overlap(reference, candidate, k),
    }


def choose_float_layers(
    quantised: Any,
    fp32: Any,
    layers: list[str],
    score: Callable[[Any], Score],
    passes: Callable[[Score], bool],
    max_float_layers: int,
) -> Selection:
    """Rank layers by the overlap gained when each alone runs in float, then keep the best in
    float one at a time until `passes`; pure in its inputs, so the search logic is testable."""
    base = score(quantised)
    log.info("int8 selection: all int8: overlap %.4f", base["neighbour_overlap"])
    selection = Selection(float_layers=[], steps=[{"float_layers": 0, **base}])
    if passes(base):
        return selection
    for name in layers:
        alone = score(with_float_layers(quantised, fp32, [name]))
        log.info("int8 sensitivity: %s in float: overlap %.4f", name, alone["neighbour_overlap"])
        selection.sensitivity.append(
            {
                "layer": name,
                "overlap_gain": alone["neighbour_overlap"] - base["neighbour_overlap"],
                "min_cosine_gain": alone["min_cosine"] - base["min_cosine"],
            }
        )
    selection.sensitivity.sort(key=lambda s: (-s["overlap_gain"], -s["min_cosine_gain"]))
    for ranked in selection.sensitivity[:max_float_layers]:
        selection.float_layers.append(str(ranked["layer"]))
        now = score(with_float_layers(quantised, fp32, selection.float_layers))
        selection.steps.append({"float_layers": len(selection.float_layers), **now})
        log.info(
            "int8 selection: %d in float: overlap %.4f, min cosine %.5f",
            len(selection.float_layers),
            now["neighbour_overlap"],
            now["min_cosine"],
        )
        if passes(now):
            break
    return selection


def quantize_static(
    fp32_model: Path,
    out: Path,
    *,
    reference: Path,
    calibration: list[Window],
    selection: list[Window],
    recipe: StaticInt8Recipe,
    min_cosine: float,
    min_overlap: float,
    k: int,
    runtime: str,
) -> Selection:
    """Write the static int8 graph of `fp32_model` to `out`; return which layers stayed float
    and why. `reference` is the fp32 graph its vectors are judged against (often the same)."""
    import onnx

    reference_runtime = "openvino-cpu-f32" if "openvino" in runtime else runtime
    ref_vectors = GraphRunner(reference, reference_runtime, recipe.threads).vectors(selection)
    k = min(k, len(selection) - 1)

    def score(model: Any) -> Score:
        with tempfile.TemporaryDirectory() as work:
            path = Path(work) / "candidate.onnx"
            onnx.save(model, str(path))
            got = GraphRunner(path, runtime, recipe.threads).vectors(selection)
        return score_vectors(ref_vectors, got, k)

    def passes(s: Score) -> bool:
        return (
            s["min_cosine"] >= min_cosine + recipe.selection_margin_cosine
            and s["neighbour_overlap"] >= min_overlap + recipe.selection_margin_overlap
        )

    with tempfile.TemporaryDirectory() as work:
        all_int8 = Path(work) / "all-int8.onnx"
        nncf_quantize(fp32_model, calibration, recipe, [], all_int8)
        quantised = onnx.load(str(all_int8))
        fp32 = onnx.load(str(fp32_model))
        layers = weight_matmuls(fp32)  # NNCF keeps the node names
        chosen = choose_float_layers(
            quantised, fp32, layers, score, passes, recipe.max_float_layers
        )
        log.info(
            "int8: %d of %d weight MatMuls kept in float: %s",
            len(chosen.float_layers),
            len(layers),
            ", ".join(chosen.float_layers) or "none",
        )
        if chosen.float_layers:
            nncf_quantize(fp32_model, calibration, recipe, chosen.float_layers, out)
        else:
            all_int8.replace(out)
    return chosen
