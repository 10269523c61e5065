"""A trust's own task from its table: columns mapped (not renamed), both split styles, both
kinds, and a missing column as one clear line (no traceback, no note text)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from training.cli import register
from training.evaluate.data import EvaluationError
from training.evaluate.suite.catalogue import load_task
from training.evaluate.suite.config import parse_suite
from training.evaluate.suite.tasks import ClassificationTask, RetrievalTask

WORDS = {
    "cardiac": "chest pain heart rate",
    "respiratory": "shortness of breath cough oxygen saturation",
    "renal": "renal failure",
}


def _write_notes(path: Path, per_class: int = 20) -> Path:
    rows = []
    for dx, words in WORDS.items():
        for i in range(per_class):
            patient = f"P{dx[:2]}{i // 2}"  # two notes per patient
            split = ("test", "val", "train", "train", "train")[(i // 2) % 5]
            rows.append(
                {
                    "EPR_NOTE_ID": f"{dx}-{i}",
                    "NOTE_BODY": f"clinic note {i}: {words} {words}",
                    "PRIMARY_DX": dx,
                    "MRN": patient,
                    "PARTITION": split,
                }
            )
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _suite(task: dict[str, object], **settings: object) -> dict[str, object]:
    return {"name": "trust", "settings": {"n": [2, "all"], **settings}, "tasks": [task]}


CLASSIFICATION = {
    "name": "trust-dx",
    "kind": "classification",
    "path": "notes.csv",
    "format": "csv",
    "columns": {"text": "NOTE_BODY", "label": "PRIMARY_DX", "id": "EPR_NOTE_ID", "group": "MRN"},
    "split": {"column": "PARTITION"},
}


def test_classification_from_a_split_column(tmp_path: Path) -> None:
    _write_notes(tmp_path / "notes.csv")
    suite = parse_suite(_suite(CLASSIFICATION))
    task = load_task(suite.tasks[0], suite, tmp_path).task
    assert isinstance(task, ClassificationTask)
    assert task.classes == ["cardiac", "renal", "respiratory"]
    assert {e.item_id for e in task.test} == {
        f"{dx}-{i}" for dx in WORDS for i in range(20) if (i // 2) % 5 == 0
    }
    groups = [{e.group for e in part} for part in (task.train, task.val, task.test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_classification_from_a_hash_split_of_groups_in_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _write_notes(tmp_path / "notes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "notes.parquet")
    spec = dict(CLASSIFICATION, path="notes.parquet", format="parquet")
    spec["split"] = {"by": "hash", "test_fraction": 0.3, "val_fraction": 0.3}
    suite = parse_suite(_suite(spec))
    task = load_task(suite.tasks[0], suite, tmp_path).task
    assert isinstance(task, ClassificationTask)
    groups = [{e.group for e in part} for part in (task.train, task.val, task.test)]
    assert all(groups) and not (groups[0] & groups[2] or groups[1] & groups[2])
    assert len(task.train) + len(task.val) + len(task.test) == 60


def test_retrieval_from_query_document_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = []
    for i in range(30):
        lines.append({"Q": f"question {i % 15}", "PASSAGE": f"passage {i}", "PID": f"p{i}"})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    spec = {
        "name": "trust-search",
        "kind": "retrieval",
        "path": "pairs.jsonl",
        "columns": {"query": "Q", "document": "PASSAGE", "id": "PID"},
        "split": {"by": "hash", "test_fraction": 0.5, "val_fraction": 0.3},
    }
    suite = parse_suite(_suite(spec))
    task = load_task(suite.tasks[0], suite, tmp_path).task
    assert isinstance(task, RetrievalTask)
    assert len(task.doc_ids) == 30 and len(task.val) + len(task.test) <= 15
    assert all(len(q.relevant) == 2 for q in task.val + task.test)  # each question asked twice


def test_a_missing_column_names_it_and_the_columns_the_file_has(tmp_path: Path) -> None:
    _write_notes(tmp_path / "notes.csv")
    spec = dict(CLASSIFICATION, columns={"text": "NOTE_TEXT", "label": "PRIMARY_DX"})
    suite = parse_suite(_suite(spec))
    with pytest.raises(EvaluationError) as caught:
        load_task(suite.tasks[0], suite, tmp_path)
    message = str(caught.value)
    assert "text: 'NOTE_TEXT'" in message and "'NOTE_BODY'" in message and "'MRN'" in message
    assert "\n" not in message and "clinic note" not in message
    with pytest.raises(EvaluationError, match=r"tasks\[0\] \(trust-dx\): columns\.label"):
        parse_suite(_suite(dict(CLASSIFICATION, columns={"text": "NOTE_BODY"})))


def test_bad_split_values_and_groups_across_splits_are_refused(tmp_path: Path) -> None:
    path = _write_notes(tmp_path / "notes.csv")
    text = path.read_text().replace(",test\n", ",holdout\n", 1)
    path.write_text(text)
    suite = parse_suite(_suite(CLASSIFICATION))
    with pytest.raises(EvaluationError, match="PARTITION='holdout'; expected train, val or test"):
        load_task(suite.tasks[0], suite, tmp_path)
    _write_notes(path)
    spec = dict(CLASSIFICATION, columns=dict(CLASSIFICATION["columns"], group="PRIMARY_DX"))  # type: ignore[arg-type]
    suite = parse_suite(_suite(spec))
    with pytest.raises(EvaluationError, match="share a group but the split puts them"):
        load_task(suite.tasks[0], suite, tmp_path)


def test_cli_reports_a_missing_column_in_one_line(tiny_bundle: Path, tmp_path: Path) -> None:
    import yaml

    _write_notes(tmp_path / "notes.csv")
    spec = dict(CLASSIFICATION, columns={"text": "NOTE_TEXT", "label": "PRIMARY_DX"})
    suite_file = tmp_path / "trust.yaml"
    suite_file.write_text(yaml.safe_dump(_suite(spec)))
    app = typer.Typer()
    register(app)
    args = ["evaluate", "--suite", str(suite_file), "--data-root", str(tmp_path)]
    result = CliRunner().invoke(
        app, [*args, "--models", str(tiny_bundle), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("evaluate failed: task trust-dx:") and "'NOTE_BODY'" in lines[-1]
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(
        app, [*args[:3], "--data-root", str(tmp_path / "elsewhere"), "--models", "x", "--out", "r"]
    )
    assert missing.exit_code == 2 and "data file not found" in missing.output
