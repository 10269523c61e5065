"""Static int8 bundles (training/quantize/): calibrated on notes with the held-out ones excluded,
float layers chosen by measured sensitivity, gated against fp32, and served, registered and
promoted like any bundle. Quality and speed figures are the benchmarks' (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from service.bundle import load_bundle
from service.inference.runtime import ModelRuntime
from service.inference.tokenize import NoteTokenizer
from tests.conftest import (
    TINY_WINDOW_TOKENS,
    LiveServer,
    make_settings,
    registry_with_versions,
    runtime_config_of,
)
from tests.support.tiny_model import synthetic_corpus
from training.export import ExportError, PrecisionGate, export_bundle
from training.quantize.calibration import calibration_windows, read_notes, split_notes, text_key
from training.quantize.export_int8 import StaticInt8Plan
from training.quantize.static_int8 import StaticInt8Recipe, choose_float_layers

pytest.importorskip("openvino")
pytest.importorskip("nncf")

TRUST_NOTES = synthetic_corpus(240, seed=11)
GATE_NOTES = synthetic_corpus(30, seed=12)
LENIENT = PrecisionGate(min_cosine=0.0, min_overlap=0.0)  # the random tiny model is no judge
# A selection margin no graph can meet: the search ranks every layer and keeps the allowed
# maximum in float, so the test runs the whole recipe (the lenient gate then accepts it).
SEARCHING = StaticInt8Recipe(
    calibration_windows=40, max_float_layers=2, selection_margin_overlap=2.0, threads=1
)


@pytest.fixture(scope="module")
def static_int8_bundle(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("static-int8") / "tiny-int8"
    export_bundle(
        tiny_base,
        out,
        name="tiny",
        version="8",
        max_tokens=TINY_WINDOW_TOKENS,
        precision="int8",
        quality_texts=GATE_NOTES,
        precision_gate=LENIENT,
        int8_plan=StaticInt8Plan(notes=TRUST_NOTES, source="synthetic", recipe=SEARCHING),
    )
    return out


def _vectors(bundle: Path, texts: list[str], **settings: Any) -> np.ndarray:
    runtime = ModelRuntime.load(
        load_bundle(bundle), runtime_config_of(make_settings(bundle, **settings))
    )
    return runtime.embed_sync(texts, "chunk", max_batch_tokens=4096)


def test_static_int8_bundle_records_how_it_was_made(static_int8_bundle: Path) -> None:
    manifest = load_bundle(static_int8_bundle).manifest
    assert manifest.precision == "int8"
    q = manifest.quantization
    assert q is not None and q.scheme == "static" and q.method == "nncf-ptq-smoothquant"
    assert q.calibration is not None
    assert q.calibration["windows"] == 40 and q.calibration["source"] == "synthetic"
    assert len(q.calibration["windows_sha256"]) == 64
    # Real lengths: short notes give windows shorter than the model's window.
    assert q.calibration["window_tokens_min"] < TINY_WINDOW_TOKENS
    # Every weight MatMul of the 2-layer model was measured, and the 2 best kept in float.
    assert q.sensitivity is not None and len(q.sensitivity) == 12
    gains = [s["overlap_gain"] for s in q.sensitivity]
    assert gains == sorted(gains, reverse=True)
    assert q.float_layers == [s["layer"] for s in q.sensitivity[:2]]
    check = manifest.precision_check
    assert check is not None and check.notes == len(GATE_NOTES)
    assert check.measured_on is not None and check.measured_on.startswith("openvino")
    graph = onnx.load(str(static_int8_bundle / "model.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # The float layers read float input and float weights: no DequantizeLinear feeds them.
    producer = {out: node.op_type for node in graph.node for out in node.output}
    for node in graph.node:
        if node.name in q.float_layers:
            assert all(producer.get(i) != "DequantizeLinear" for i in node.input)
        elif node.op_type == "MatMul" and node.name.startswith("node_MatMul"):
            assert producer.get(node.input[1]) == "DequantizeLinear"


def test_static_int8_serves_on_either_runtime(static_int8_bundle: Path, tiny_bundle: Path) -> None:
    fp32 = _vectors(tiny_bundle, GATE_NOTES[:8])
    for runtime in ("auto", "openvino", "onnxruntime"):
        ours = _vectors(static_int8_bundle, GATE_NOTES[:8], runtime=runtime)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        # Tolerance: int8 of a random 32-d model; the real model's figures are benchmarks'.
        assert ((ours * fp32).sum(axis=1) > 0.9).all(), runtime


def test_int8_bundle_round_trips_through_the_registry_and_serves(
    database_url: str, tiny_bundle: Path, static_int8_bundle: Path
) -> None:
    registry = registry_with_versions(database_url, tiny_bundle, static_int8_bundle)
    settings = make_settings(tiny_bundle, database_url=database_url, warmup=True)
    notes = GATE_NOTES[:3]
    with LiveServer(settings) as live, live.client() as c:
        before = c.post("/embed", json={"notes": notes}).json()
        assert before["model"]["version"] == "1"
        r = c.post("/models/tiny@8/promote")
        assert r.status_code == 200, r.text
        after = c.post("/embed", json={"notes": notes})
        assert after.status_code == 200, after.text
        body = after.json()
        assert body["model"]["version"] == "8"
        vectors = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
        assert vectors.shape == (3, 32)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        info = c.get("/info").json()
        assert any("int8" in p for p in info["model"]["providers"]), info["model"]
    row = registry.active("tiny")
    assert row is not None and row.ref == "tiny@8" and row.precision == "int8"


def test_failed_gate_refuses_the_static_bundle(tiny_base: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="int8 quality gate failed"):
        export_bundle(
            tiny_base,
            out,
            max_tokens=TINY_WINDOW_TOKENS,
            precision="int8",
            quality_texts=GATE_NOTES,
            precision_gate=PrecisionGate(min_cosine=0.0, min_overlap=1.01),  # unreachable
            int8_plan=StaticInt8Plan(
                notes=TRUST_NOTES,
                source="synthetic",
                recipe=StaticInt8Recipe(calibration_windows=20, max_float_layers=0, threads=1),
            ),
        )
    assert list(tmp_path.iterdir()) == []


def test_too_few_calibration_notes_is_a_clear_refusal(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="calibration notes"):
        export_bundle(
            tiny_base,
            tmp_path / "b",
            max_tokens=TINY_WINDOW_TOKENS,
            precision="int8",
            quality_texts=GATE_NOTES,
            precision_gate=LENIENT,
            int8_plan=StaticInt8Plan(notes=TRUST_NOTES[:40], source="synthetic"),
        )
    assert list(tmp_path.iterdir()) == []


# -- the selection logic, on a stand-in scorer (the real one is exercised above) -----------
GAIN = {"a": 0.001, "b": 0.03, "c": 0.01, "d": 0.02}


def _score(model: Any) -> dict[str, float]:
    """A scorer that treats the graph as the set of layers in float (what bypassing does)."""
    overlap = 0.90 + sum(GAIN[name] for name in model)
    return {"min_cosine": 0.99, "mean_cosine": 0.995, "neighbour_overlap": overlap}


def test_float_layers_are_chosen_by_measured_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.quantize.static_int8 as static_int8

    monkeypatch.setattr(
        static_int8, "with_float_layers", lambda model, fp32, layers: frozenset(layers)
    )
    passes = lambda s: s["neighbour_overlap"] >= 0.945  # noqa: E731
    chosen = choose_float_layers(frozenset(), None, list(GAIN), _score, passes, 4)
    assert [s["layer"] for s in chosen.sensitivity] == ["b", "d", "c", "a"]
    assert chosen.float_layers == ["b", "d"]  # 0.90 + 0.03 + 0.02 clears 0.945: stop there
    assert [step["float_layers"] for step in chosen.steps] == [0, 1, 2]

    capped = choose_float_layers(frozenset(), None, list(GAIN), _score, passes, 1)
    assert capped.float_layers == ["b"]  # the cap wins; the gate then decides

    already = choose_float_layers(frozenset(), None, list(GAIN), _score, lambda s: True, 4)
    assert already.float_layers == [] and already.sensitivity == []


# -- the notes the graph is calibrated on -------------------------------------------------
def test_held_out_ids_and_their_duplicates_never_calibrate(tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text(
        "note_id,transcription\n"
        '1,"held-out note, test split"\n'
        "2,a training note\n"
        '3,"held-out   note, TEST split"\n'  # the same text listed again (MTSamples does)
        "4,another training note\n"
        "5,\n"
    )
    assert read_notes(notes, exclude_ids={"1"}) == ["a training note", "another training note"]
    assert read_notes(notes, only_ids={"1"}) == ["held-out note, test split"]
    split = split_notes(["x", "y", "z", "w"], held_out=["y"], selection_share=0.5)
    assert sorted(split.calibration + split.selection) == ["w", "x", "z"]
    assert text_key("A  b") == text_key("a b")


def test_calibration_windows_are_the_services_windows(tiny_bundle: Path) -> None:
    tokenizer = NoteTokenizer(
        tiny_bundle / "tokenizer.json",
        max_tokens=TINY_WINDOW_TOKENS,
        overlap_tokens=8,
        max_windows_per_note=64,
    )
    texts = synthetic_corpus(20, seed=3)
    calibration = calibration_windows(tokenizer, texts, count=25, source="synthetic")
    expected = [w for note in tokenizer.tokenize(texts, "chunk") for w in note.windows][:25]
    assert len(calibration.windows) == 25
    assert all(np.array_equal(a, b) for a, b in zip(calibration.windows, expected, strict=True))
    record = calibration.record
    assert record["windows"] == 25 and record["window_tokens_max"] <= TINY_WINDOW_TOKENS
    assert not any(word in str(record) for word in texts[0].split())  # no text in the manifest
