"""The evaluation harness end to end on the tiny model: data, few-shot, metrics, report, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import migrated_sqlite_url
from training.cli import register
from training.evaluate.data import (
    EvaluationError,
    LabelledNote,
    build_eval_set,
    load_notes,
    parse_n,
    sample_few_shot,
)
from training.evaluate.metrics import classification_scores, embedding_space_metrics
from training.evaluate.models import embed_texts, load_runtime, resolve_model


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _notes(counts: dict[str, int]) -> list[LabelledNote]:
    return [
        LabelledNote(f"{c}-{i}", "text", c, None, c) for c, k in counts.items() for i in range(k)
    ]


def test_few_shot_sampling_is_seeded_and_balanced() -> None:
    notes = _notes({"a": 10, "b": 7})
    first = sample_few_shot(notes, ["a", "b"], 5, seed=3)
    assert first == sample_few_shot(notes, ["a", "b"], 5, seed=3)
    assert first != sample_few_shot(notes, ["a", "b"], 5, seed=4)
    assert sorted(notes[i].y for i in first) == ["a"] * 5 + ["b"] * 5
    assert len(sample_few_shot(notes, ["a", "b"], "all", seed=0)) == 17


def test_a_class_with_fewer_examples_than_n_is_a_clear_error() -> None:
    with pytest.raises(EvaluationError, match=r"N=8 .* 'b' has 7"):
        sample_few_shot(_notes({"a": 10, "b": 7}), ["a", "b"], 8, seed=0)
    with pytest.raises(EvaluationError, match="two classes"):
        sample_few_shot(_notes({"a": 10}), ["a"], 2, seed=0)
    with pytest.raises(EvaluationError, match="positive integer"):
        parse_n("0")


def test_eval_set_splits_by_text_and_refuses_a_single_class(mtsamples_csv: Path) -> None:
    notes = load_notes(mtsamples_csv, "mtsamples")
    assert len(notes) == 72  # every text listed twice in the file, once per heading
    es = build_eval_set(notes, task="label", min_per_class=4)
    parts = [{n.text for n in p} for p in (es.train, es.val, es.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    test_ids = {n.note_id for n in es.test}
    fixed = build_eval_set(notes, task="label", test_ids=test_ids)
    assert {n.note_id for n in fixed.test} == test_ids
    with pytest.raises(EvaluationError, match="0 class"):
        build_eval_set(notes, task="label", classes=None, min_per_class=1000)
    with pytest.raises(EvaluationError, match="two or more"):
        build_eval_set(notes, task="label", classes=["Neurology"])


def test_metrics_on_known_geometry() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4, 16, dtype=np.float32) * 5
    x = np.concatenate([c + rng.normal(0, 0.3, (20, 16)) for c in centres]).astype(np.float32)
    y = [str(i) for i in range(4) for _ in range(20)]
    good = embedding_space_metrics(x, y)
    shuffled = embedding_space_metrics(x, list(rng.permutation(y)))
    assert good["silhouette_cosine"] > 0.5 > shuffled["silhouette_cosine"]
    assert good["davies_bouldin"] < shuffled["davies_bouldin"]
    assert good["cosine_gap"] > 0.5 and abs(shuffled["cosine_gap"]) < 0.1
    assert good["alignment"] < shuffled["alignment"]
    with pytest.raises(EvaluationError, match="two labels"):
        embedding_space_metrics(x, ["a"] * len(x))
    scores = classification_scores(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["a", "b"])
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-9)  # exact fractions
    assert scores["per_class"]["a"]["recall"] == pytest.approx(0.5)


def test_frozen_embeddings_are_the_services(tiny_bundle: Path) -> None:
    runtime = load_runtime(tiny_bundle, threads=1)
    texts = ["chest pain", "knee fracture " * 40]  # the second is chunked into windows
    x = embed_texts(runtime, texts, chunk_notes=1)
    y = runtime.embed_sync(texts, "chunk", 8192)
    np.testing.assert_allclose(x, y, atol=1e-5)  # batching differs: fp32 kernel noise only


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="unknown model"):
        resolve_model("nope@1", tmp_path, registry=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="neither a model bundle"):
        resolve_model(str(tmp_path / "empty"), tmp_path)


def test_evaluate_cli_end_to_end(
    tiny_base: Path, tiny_bundle: Path, mtsamples_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(
        _cli(),
        [
            "evaluate",
            "--models",
            f"bundle={tiny_bundle}",
            "--models",
            f"checkpoint={tiny_base}",
            "--data",
            str(mtsamples_csv),
            "--out",
            str(out),
            "--n",
            "2",
            "--n",
            "all",
            "--seeds",
            "2",
            "--finetune-n",
            "2",
            "--finetune-seeds",
            "1",
            "--finetune-epochs",
            "1",
            "--finetune-max-length",
            "32",
            "--export-max-tokens",
            "32",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == ["Cardiovascular / Pulmonary", "Neurology", "Orthopedic"]
    for label in ("bundle", "checkpoint"):
        model = report["models"][label]
        cell = model["classification"]["frozen_lr"]["2"]
        assert cell["seeds"] == 2 and 0 <= cell["macro_f1"]["mean"] <= 1
        assert len(cell["runs"][0]["per_class"]) == 3
        assert set(model["classification"]["frozen_head"]) == {"2", "all"}
        assert model["space"]["category"]["labels"] == 3
        assert (out / model["pictures"][0]).is_file()
    # The bundle has no checkpoint to fine-tune; the checkpoint was exported for its frozen path.
    assert "finetune" not in report["models"]["bundle"]["classification"]
    assert report["models"]["checkpoint"]["classification"]["finetune"]["2"]["seeds"] == 1
    md = (out / "report.md").read_text()
    assert "fine-tuned encoder, paper head" in md and "± " in md
    # Same tiny weights, same window: the exported checkpoint embeds like the bundle.
    a, b = (
        report["models"][k]["space"]["category"]["silhouette_cosine"]
        for k in ("bundle", "checkpoint")
    )
    assert a == pytest.approx(b, abs=1e-4)


def test_evaluate_cli_bad_input(tiny_bundle: Path, mtsamples_csv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["evaluate", "--data", str(mtsamples_csv), "--out", str(tmp_path / "r")]
    too_many = runner.invoke(
        _cli(), [*base, "--models", str(tiny_bundle), "--n", "50", "--min-per-class", "0"]
    )
    assert too_many.exit_code == 2 and "N=50" in too_many.output
    db = ["--database-url", migrated_sqlite_url()]
    unknown = runner.invoke(_cli(), [*base, *db, "--models", "ghost@3", "--n", "2"])
    assert unknown.exit_code == 2 and "unknown model" in unknown.output
