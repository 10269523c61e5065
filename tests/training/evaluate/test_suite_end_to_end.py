"""The suite end to end on tiny data: two real tiny bundles, every visible task's loader, the
CLI, report md/json/png, and eval_metrics stored in a real SQLite registry row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import migrated_sqlite_url, registry_with_versions
from tests.support.suite_data import TINY_SUITE
from training.cli import register


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(TINY_SUITE)
    return path


def test_suite_cli_end_to_end(
    tiny_bundle: Path, tiny_bundle_v2: Path, data_root: Path, suite_file: Path, tmp_path: Path
) -> None:
    url = migrated_sqlite_url()
    registry = registry_with_versions(url, tiny_bundle, tiny_bundle_v2, active="tiny@1")
    out = tmp_path / "report"
    args = ["evaluate", "--suite", str(suite_file), "--data-root", str(data_root)]
    args += ["--models", "base=tiny@1", "--models", "tiny@2", "--out", str(out)]
    args += ["--database-url", url, "--threads", "1"]
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["baseline"] == "base" and report["split"] == "test"
    assert set(report["tasks"]) == {
        "mtsamples-note-type",
        "mtsamples-specialty",
        "medquad-qtype",
        "medquad-retrieval",
        "meqsum-retrieval",
        "medec-type",
    }
    assert report["models"]["base"]["runtime"] == "onnxruntime-fp32"
    medec = report["tasks"]["medec-type"]
    assert "causalOrganism" in medec["dropped_classes"]
    for name, task in report["tasks"].items():
        assert set(task["models"]) == {"base", "tiny@2"}, name
        assert set(task["diffs"]) == {"tiny@2"}, name  # the baseline is not paired with itself
        if task["kind"] == "classification":
            base, other = (task["models"][m]["frozen_lr"] for m in ("base", "tiny@2"))
            for n in ("2", "all"):
                assert [r["draw"] for r in base[n]["runs"]] == [r["draw"] for r in other[n]["runs"]]
                assert len(base[n]["runs"]) == 2
                diff = task["diffs"]["tiny@2"]["frozen_lr"][n]
                assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
                assert len(diff["per_draw"]) == 2
        else:
            assert set(task["models"]["base"]["metrics"]) == set(task["metrics"])
    meqsum = report["tasks"]["meqsum-retrieval"]
    assert "meqsum-retrieval/reverse" in meqsum["models"]["base"]["secondary"]
    assert "within_group_acc@1" in report["tasks"]["medquad-retrieval"]["metrics"]
    md = (out / "report.md").read_text()
    assert "## Summary" in md and "## medec-type (classification)" in md and "[" in md
    assert report["plots"] == ["diffs.png"] and (out / "diffs.png").stat().st_size > 1000
    # Stored on both registered versions in the agreed shape.
    stored = registry.get("tiny@2").eval_metrics["suite"]
    assert stored["name"] == "tiny" and stored["split"] == "test"
    assert stored["fingerprint"] == report["suite"]["fingerprint"]
    assert stored["runtime"] == "onnxruntime-fp32"
    assert stored["primary"]["mtsamples-specialty"]["metric"] == "macro_f1@2"
    assert stored["primary"]["medquad-retrieval"] == {
        "metric": "ndcg@10",
        "value": pytest.approx(
            report["tasks"]["medquad-retrieval"]["models"]["tiny@2"]["metrics"]["ndcg@10"]
        ),
        "higher_is_better": True,
    }
    assert stored["baseline"]["label"] == "base" and stored["baseline"]["ref"] == "tiny@1"
    assert set(stored["baseline"]["diff"]) == set(report["tasks"])
    assert set(stored["baseline"]["diff"]["medec-type"]) == {"mean", "ci_low", "ci_high"}
    assert registry.get("tiny@1").eval_metrics["suite"]["baseline"]["diff"] == {}


def test_run_suite_on_validation_never_embeds_test_items(
    tiny_base: Path, tiny_bundle: Path, data_root: Path, tmp_path: Path
) -> None:
    """split="val" (choosing settings) touches no test item; fine-tuning runs for a model with
    a checkpoint and is skipped, with the reason, for a bundle alone."""
    import numpy as np
    import yaml

    from training.evaluate.suite.catalogue import load_task
    from training.evaluate.suite.config import parse_suite
    from training.evaluate.suite.embeddings import text_digest
    from training.evaluate.suite.runner import RunConfig, run_suite
    from training.evaluate.suite.tasks import RetrievalTask

    definition = yaml.safe_load(TINY_SUITE)
    definition["settings"]["finetune"] = {
        "tasks": ["medec-type"], "n": [2], "seeds": 1, "max_steps": 2, "eval_every": 1,
        "max_length": 16,
    }  # fmt: skip
    suite = parse_suite(definition)
    out = tmp_path / "val"
    config = RunConfig(data_root=data_root, threads=1, baseline="bundle", plots=False)
    report = run_suite([f"ckpt={tiny_base}", f"bundle={tiny_bundle}"], suite, config, out, "val")
    assert report["split"] == "val" and report["baseline"] == "bundle"
    assert "Validation split" in (out / "report.md").read_text()
    medec = report["tasks"]["medec-type"]
    cell = medec["models"]["ckpt"]["finetune"]["2"]
    assert (
        cell["runs"][0]["chosen"]["steps_run"] <= 2 and cell["stopped_early"] + cell["hit_cap"] == 1
    )
    assert "no checkpoint" in medec["models"]["bundle"]["finetune_skipped"]
    assert "finetune" not in medec["diffs"]["ckpt"]  # nothing to pair it with
    embedded: set[str] = set()
    for cache in (out / "cache").glob("*.npz"):
        with np.load(cache) as data:
            embedded |= set(data["keys"].tolist())
    assert embedded
    tasks = [load_task(spec, suite, data_root).task for spec in suite.tasks]
    # A retrieval corpus is searched whole on either split (MedQuAD's holds the qtype answers).
    directions = [d for t in tasks if isinstance(t, RetrievalTask) for d in [t, *t.secondary]]
    corpora = {text for d in directions for text in d.doc_texts}
    checked = 0
    for spec, task in zip(suite.tasks, tasks, strict=True):
        if task.kind == "classification":
            test_texts = {e.text for e in task.test} - {e.text for e in task.train + task.val}
        else:
            test_texts = {q.text for q in task.test} - {q.text for q in task.val}
        test_texts -= corpora
        assert not {text_digest(t) for t in test_texts} & embedded, spec.name
        checked += bool(test_texts)
    # medquad-qtype test answers and MeQSum test summaries are also corpora: nothing to check.
    assert checked == 4
