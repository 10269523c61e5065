"""`notespace adapt` end to end on tiny data, its errors, resume, and its label-free measures."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from service.bundle import load_bundle
from training.adapt.heldout import neighbour_agreement, note_mrr, reciprocal_ranks, span_queries
from training.adapt.plan import AdaptPlan, Columns
from training.adapt.weight import WeightScore, choose
from training.cli import register
from training.data.notes import Note
from training.data.synthetic import synthetic_notes

TINY_RECIPE = """\
objective: declutr
seed: 3
max_steps: 4
eval_every: 2
eval_batches: 1
checkpoint_every: 2
log_every: 1
num_threads: 1
batch_size: 4
mixed_precision: false
optim: {lr: 1.0e-4, warmup_steps: 1}
declutr: {num_anchors: 2, num_positives: 1, min_span: 4, max_span: 16, mlm_weight: 0.0,
          positive_mode: adjacent}
distill: {weight: 1.0}
"""


def _rows(n: int = 90) -> list[dict[str, str]]:
    notes = synthetic_notes(n * 2, seed=5)
    # two synthetic notes per row: long enough (48+ words) to cut a passage from
    return [
        {"nid": f"n{i}", "body": f"{a.text} {b.text}", "mrn": f"p{i // 3}", "kind": a.category}
        for i, (a, b) in enumerate(zip(notes[::2], notes[1::2], strict=True))
    ]


def _write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def notes_csv(tmp_path: Path) -> Path:
    return _write_csv(tmp_path / "notes.csv", _rows())


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(TINY_RECIPE)
    return path


def _invoke(*args: str | Path) -> Any:
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def _adapt_args(notes: Path, tmp_path: Path, recipe: Path, tiny_bert: Path) -> list[Any]:
    return [
        "adapt",
        notes,
        "--text-column",
        "body",
        "--id-column",
        "nid",
        "--group-column",
        "mrn",
        "--out",
        tmp_path / "bundles" / "trust",
        "--work-dir",
        tmp_path / "work",
        "--recipe",
        recipe,
        "--base",
        tiny_bert,
        "--alpha",
        "0.5",
        "--alpha",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]


@pytest.mark.slow
def test_adapt_end_to_end_without_labels_then_resume(
    notes_csv: Path, tmp_path: Path, recipe: Path, tiny_bert: Path
) -> None:
    args = _adapt_args(notes_csv, tmp_path, recipe, tiny_bert)
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "bundles" / "trust")  # hashes verified
    assert bundle.manifest.name == "trust" and bundle.manifest.version == "1"
    adaptation = bundle.manifest.eval_metrics["adaptation"]
    assert adaptation["alpha"] in (0.0, 0.5, 1.0)
    assert [w["alpha"] for w in adaptation["weights"]] == [0.0, 0.5, 1.0]
    work = tmp_path / "work"
    report = json.loads((work / "adaptation.json").read_text())
    assert report["data"]["split_by"] == "group"
    assert report["data"]["training_notes"] + report["data"]["held_out_notes"] == 90
    assert [s["stage"] for s in report["stages"]] == ["data", "train", "weight", "bundle"]
    assert report["training"]["steps"] == 4 and report["training"]["tokens_per_s"] > 0
    md = (work / "adaptation.md").read_text()
    assert "Mixing weight" in md and "**chosen**" in md and "Time per stage" in md
    assert (work / "adaptation.png").stat().st_size > 1000
    # no note text in what a trust would pass around
    assert "Haemostasis" not in md and "Haemostasis" not in json.dumps(report)

    again = _invoke(*args)
    assert again.exit_code == 2 and "pass --resume" in again.output
    resumed = _invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "train: done before" in resumed.output
    assert "alpha 0.5: span MRR@10" in resumed.output  # read back, not re-scored
    changed = _invoke(*[a if a != "0.5" else "0.4" for a in args], "--resume")
    assert changed.exit_code == 2 and "differ from the run it holds" in changed.output


@pytest.mark.slow
def test_a_stopped_run_resumes_and_labels_fit_the_served_head(
    notes_csv: Path, tmp_path: Path, recipe: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.adapt.pipeline as pipeline

    def stop(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt  # the operator's Ctrl-C after training

    monkeypatch.setattr(pipeline, "_choose_weight", stop)
    args = [*_adapt_args(notes_csv, tmp_path, recipe, tiny_bert), "--category-column", "kind"]
    assert _invoke(*args).exit_code != 0
    assert (tmp_path / "work" / "train" / "final").is_dir()
    monkeypatch.undo()
    resumed = _invoke(*args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "train: done before" in resumed.output
    # The labels fit the head /classify serves, compared with the base given the same labels.
    from service.inference.head import load_head

    bundle = load_bundle(tmp_path / "bundles" / "trust")
    head = load_head(bundle)
    kinds = {"discharge_summary", "nursing", "operative_note", "progress_note", "radiology"}
    assert head is not None and len(head.labels) >= 2 and set(head.labels) <= kinds
    report = json.loads((tmp_path / "work" / "adaptation.json").read_text())
    assert report["head"]["field"] == "category"
    assert "the base given the same labels" in report["head"]["summary"]
    assert "Labels: the served category head" in (tmp_path / "work" / "adaptation.md").read_text()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("body,nid,mrn\n", "holds no non-empty notes"),
        ("nid,text,mrn\nn1,some text here,p1\n", "missing column(s) text='body'"),
    ],
)
def test_empty_files_and_missing_columns_are_one_clear_error(
    tmp_path: Path, recipe: Path, tiny_bert: Path, content: str, why: str
) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text(content)
    result = _invoke(*_adapt_args(notes, tmp_path, recipe, tiny_bert))
    assert result.exit_code == 2
    assert why in result.output and "Traceback" not in result.output
    if "missing" in why:
        assert "the file has 'nid', 'text', 'mrn'" in result.output


def test_a_file_too_small_is_refused_with_the_counts(
    tmp_path: Path, recipe: Path, tiny_bert: Path
) -> None:
    notes = _write_csv(tmp_path / "notes.csv", _rows(30))
    result = _invoke(*_adapt_args(notes, tmp_path, recipe, tiny_bert))
    assert result.exit_code == 2
    assert "30 usable notes" in result.output and "at least 64 to train" in result.output


def test_one_reader_takes_every_format_through_the_column_map(tmp_path: Path) -> None:
    from training.adapt.pipeline import load_notes

    rows = _rows()
    tsv = _write_csv(tmp_path / "notes.tsv", rows, delimiter="\t")
    jsonl = tmp_path / "notes.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "notes.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    seen = []
    for path in (_write_csv(tmp_path / "notes.csv", rows), tsv, jsonl, parquet):
        plan = AdaptPlan(
            notes_file=path,
            columns=Columns(text="body", note_id="nid", group="mrn", category="kind"),
            out=tmp_path / "b",
            work_dir=tmp_path / "w",
            name="x",
        )
        train, held, counts = load_notes(plan)
        assert counts["split_by"] == "group"
        # no patient on both sides
        assert not {n.group for n in train} & {n.group for n in held}
        assert all(n.category for n in train)
        seen.append(sorted(n.note_id for n in held))
    assert all(s == seen[0] for s in seen)  # the same split whatever the format


def test_excluded_ids_and_their_patients_are_never_trained_on(tmp_path: Path) -> None:
    from training.adapt.pipeline import load_notes

    rows = _rows(120)
    excluded = tmp_path / "eval-ids.txt"
    excluded.write_text("n0\nn4\n")
    plan = AdaptPlan(
        notes_file=_write_csv(tmp_path / "notes.csv", rows),
        columns=Columns(text="body", note_id="nid", group="mrn"),
        out=tmp_path / "b",
        work_dir=tmp_path / "w",
        name="x",
        exclude_ids=excluded,
    )
    train, held, counts = load_notes(plan)
    kept = {n.note_id for n in train + held}
    # n0..n2 share patient p0, n3..n5 share p1: all six go
    assert not kept & {f"n{i}" for i in range(6)} and counts["excluded"] == 6


def test_span_queries_are_deterministic_and_share_no_words_with_their_document() -> None:
    notes = [Note(f"n{i}", " ".join(f"w{i}_{j}" for j in range(200))) for i in range(5)]
    notes.append(Note("short", "too short to use"))
    first, again = span_queries(notes), span_queries(notes)
    assert first == again and "short" not in first.note_ids
    assert len(first.documents) == 5 and len(first.queries) > 5  # several passages per note
    for i, doc in enumerate(first.documents):
        mine = [q.split() for q, o in zip(first.queries, first.owner, strict=True) if o == i]
        words = [w for q in mine for w in q]
        d = doc.split()
        assert 1 <= len(mine) <= 4 and all(16 <= len(q) <= 48 for q in mine)
        # disjoint passages, none sharing a word with the remainder, nothing lost
        assert len(set(words)) == len(words) and not set(words) & set(d)
        assert len(words) + len(d) == 200 and len(d) >= 32


def test_reciprocal_ranks_and_neighbour_agreement_by_hand() -> None:
    docs = np.eye(3, dtype=np.float32)
    queries = np.asarray([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], dtype=np.float32)
    # query 1's own document (index 1) scores 0.8, behind nothing; query 0 and 2 rank 1st
    assert reciprocal_ranks(queries, docs).tolist() == [1.0, 1.0, 1.0]
    swapped = np.asarray([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float32)
    assert reciprocal_ranks(swapped, docs).tolist() == [0.5, 0.5, 1.0]
    # two queries of document 0 (ranks 2 and 1), one of document 2 (rank 1), none of 1
    assert note_mrr(swapped, docs, [0, 0, 2]).tolist() == [0.75, 0.0, 1.0]
    base = np.asarray([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert neighbour_agreement(base, base, k=1).tolist() == [1.0] * 4
    moved = base[[0, 2, 1, 3]]  # 0's nearest is now 2's old vector: every pair changes
    assert neighbour_agreement(moved, base, k=1).tolist() == [0.0] * 4


def _score(alpha: float, gain: float, verdict: str) -> WeightScore:
    return WeightScore(alpha, 0.5 + gain, gain, (gain - 0.01, gain + 0.01), verdict, 0.8, "b")


def test_the_weight_rule_takes_the_smallest_weight_near_the_best_gain() -> None:
    scores = [
        _score(0.2, 0.02, "better"),
        _score(0.4, 0.046, "better"),
        _score(0.6, 0.05, "better"),
        _score(1.0, 0.03, "better"),
    ]
    choice = choose(scores)
    assert choice.alpha == 0.4  # 0.046 >= 0.9 * 0.05; 0.02 is not
    assert "0.9" not in choice.reason and "90%" in choice.reason
    level = [_score(0.5, 0.01, "level"), _score(1.0, -0.02, "worse")]
    assert choose(level).alpha == 0.0  # nothing beats the base with confidence


def test_the_head_leaves_out_rare_label_values_and_counts_them() -> None:
    from training.adapt.labels import MIN_PER_CLASS, head_classes
    from training.evaluate.data import LabelledNote

    def notes(label: str, k: int) -> list[LabelledNote]:
        return [LabelledNote(f"{label}{i}", "text", label, None, None) for i in range(k)]

    fit = notes("common", MIN_PER_CLASS) + notes("also", MIN_PER_CLASS + 3) + notes("rare", 1)
    val = notes("common", 1) + notes("also", 1) + notes("rare", 1) + notes("val-only", 2)
    # "rare" has too few fitting notes, "val-only" none: both left out, the rest kept.
    assert head_classes(fit, val) == (["also", "common"], 2)
    # A value with enough fitting notes but none to choose C on cannot be checked either.
    assert head_classes(fit, val[1:]) == (["also"], 3)
