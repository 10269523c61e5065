"""Bad inputs fail with a clear error before any training starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.errors import CorpusError, TrainingConfigError
from training.runs.config import load_config, parse_config
from training.runs.loop import prepare, train

SECRET = "Patient Jane Example has a secret diagnosis"


def _config(base: Path, out: Path, corpus: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "objective": "mlm",
        "base_model": str(base),
        "output_dir": str(out),
        "corpus": corpus,
        **extra,
    }


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missing_column(tiny_bert: Path, tmp_path: Path) -> None:
    corpus = _jsonl(tmp_path / "c.jsonl", [{"note": SECRET}])
    cfg = parse_config(_config(tiny_bert, tmp_path / "r", {"format": "jsonl", "path": str(corpus)}))
    with pytest.raises(CorpusError, match=r"missing column\(s\) text='text'.*'note'"):
        prepare(cfg)


def test_single_category_value(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [{"text": f"{SECRET} {i}", "note_id": i, "kind": "nursing"} for i in range(40)]
    corpus = _jsonl(tmp_path / "c.jsonl", rows)
    data = _config(
        tiny_bert,
        tmp_path / "r",
        {"format": "jsonl", "path": str(corpus), "columns": {"category": "kind"}},
    )
    data["objective"] = "category"
    with pytest.raises(CorpusError, match="single value") as info:
        prepare(parse_config(data))
    assert "Jane" not in str(info.value)


def test_category_objective_groups_by_the_configured_field(tiny_bert: Path, tmp_path: Path) -> None:
    # One note type, two specialties: by category there is nothing to separate, by label there is.
    rows = [
        {
            "text": f"note {i}",
            "note_id": i,
            "kind": "letter",
            "specialty": ["cardio", "neuro"][i % 2],
        }
        for i in range(40)
    ]
    corpus = _jsonl(tmp_path / "c.jsonl", rows)
    columns = {"category": "kind", "label": "specialty"}
    data = _config(
        tiny_bert, tmp_path / "r", {"format": "jsonl", "path": str(corpus), "columns": columns}
    )
    data["objective"] = "category"
    with pytest.raises(CorpusError, match="category column has a single value"):
        prepare(parse_config(data))
    data["category"] = {"loss": "supcon", "fields": ["label"]}
    assert prepare(parse_config(data)).categories == ["cardio", "neuro"]
    # Both fields: the single-valued one is refused by name.
    data["category"] = {"loss": "supcon", "fields": ["label", "category"]}
    with pytest.raises(CorpusError, match="category column has a single value"):
        prepare(parse_config(data))
    with pytest.raises(TrainingConfigError, match="linear takes one field"):
        parse_config({**data, "category": {"loss": "linear", "fields": ["label", "category"]}})


def test_category_without_a_category_column(tiny_bert: Path, tmp_path: Path) -> None:
    rows = [{"text": f"note {i}", "note_id": i} for i in range(40)]
    corpus = _jsonl(tmp_path / "c.jsonl", rows)
    data = _config(tiny_bert, tmp_path / "r", {"format": "jsonl", "path": str(corpus)})
    data["objective"] = "category"
    with pytest.raises(TrainingConfigError, match=r"corpus\.columns\.category"):
        prepare(parse_config(data))


def test_corpus_too_small_for_the_batch(tiny_bert: Path, tmp_path: Path) -> None:
    data = _config(
        tiny_bert, tmp_path / "r", {"format": "synthetic", "synthetic_notes": 12}, batch_size=64
    )
    data["objective"] = "declutr"
    with pytest.raises(CorpusError, match="fewer than batch_size 64"):
        prepare(parse_config(data))


def test_all_empty_notes(tiny_bert: Path, tmp_path: Path) -> None:
    corpus = _jsonl(
        tmp_path / "c.jsonl", [{"text": "  ", "note_id": 1}, {"text": None, "note_id": 2}]
    )
    cfg = parse_config(_config(tiny_bert, tmp_path / "r", {"format": "jsonl", "path": str(corpus)}))
    with pytest.raises(CorpusError, match="no non-empty notes"):
        prepare(cfg)


def test_base_that_is_not_an_encoder(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    cfg = parse_config(_config(tmp_path / "base", tmp_path / "r", {"format": "synthetic"}))
    with pytest.raises(TrainingConfigError, match=r"no config\.json"):
        prepare(cfg)
    (tmp_path / "base" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(TrainingConfigError, match=r"not an encoder|masked-LM"):
        prepare(cfg)


def test_existing_run_needs_resume_and_resume_needs_a_checkpoint(
    tiny_bert: Path, tmp_path: Path
) -> None:
    (tmp_path / "r" / "final").mkdir(parents=True)
    cfg = parse_config(_config(tiny_bert, tmp_path / "r", {"format": "synthetic"}))
    with pytest.raises(TrainingConfigError, match=r"--resume"):
        train(cfg, progress=False)
    with pytest.raises(TrainingConfigError, match="no checkpoint"):
        train(cfg, resume=True, progress=False)


def test_config_validation_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: x\ncorpus: {format: csv}\nbatch_size: 0\n")
    with pytest.raises(TrainingConfigError, match=r"batch_size.*corpus|corpus.*batch_size"):
        load_config(path, objective="mlm")
    path.write_text("objective: declutr\noutput_dir: x\ncorpus: {format: synthetic}\n")
    with pytest.raises(TrainingConfigError, match=r"'declutr' config but the command is 'mlm'"):
        load_config(path, objective="mlm")


def test_cli_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    from service.cli import app
    from training.cli import register

    register(app)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"output_dir: {tmp_path / 'r'}\ncorpus: {{format: csv, path: {tmp_path / 'no.csv'}}}\n"
    )
    result = CliRunner().invoke(app, ["train", "mlm", "--config", str(path), "--no-progress"])
    assert result.exit_code == 2
    assert "corpus file not found" in result.output
