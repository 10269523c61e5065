"""Corpus loading, cleaning, de-duplication and group splits."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data.corpus import CorpusConfig, SplitConfig, load_corpus
from training.data.mimic import clean_deid, load_noteevents
from training.data.mtsamples import load_mtsamples
from training.data.notes import ColumnMap, Note, deduplicate, fingerprint
from training.data.splits import exclude, split_by_group
from training.data.synthetic import synthetic_notes
from training.data.tables import load_table_notes
from training.errors import CorpusError

MTSAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "mtsamples" / "mtsamples.csv"
ROWS = [
    {"id": "1", "body": "Chest clear.  BP 120/80.", "pt": "p1", "kind": "nursing"},
    {"id": "2", "body": "CT head: no bleed.", "pt": "p2", "kind": "radiology"},
    {"id": "3", "body": "", "pt": "p3", "kind": "radiology"},
]
COLUMNS = ColumnMap(text="body", note_id="id", group="pt", category="kind")


def _write(tmp_path: Path, fmt: str, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / f"notes.{fmt}"
    if fmt == "csv":
        header = list(rows[0])
        lines = [",".join(header)] + [",".join(f'"{r[h]}"' for h in header) for r in rows]
        path.write_text("\n".join(lines) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tables_load_with_configured_columns(tmp_path: Path, fmt: str) -> None:
    notes, empty = load_table_notes(_write(tmp_path, fmt, ROWS), COLUMNS)  # type: ignore[arg-type]
    assert empty == 1
    assert notes[0] == Note("1", "Chest clear. BP 120/80.", group="p1", category="nursing")


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "csv", ROWS)
    with pytest.raises(CorpusError, match=r"category='ward'"):
        load_table_notes(path, ColumnMap(text="body", note_id="id", category="ward"))


def test_non_text_note_is_rejected_without_echoing_content(tmp_path: Path) -> None:
    path = _write(tmp_path, "jsonl", [{"id": 1, "body": 12345}, {"id": 2, "body": "secret"}])
    with pytest.raises(CorpusError, match=r"column 'body' row 0 holds a int") as info:
        load_table_notes(path, ColumnMap(text="body", note_id="id"))
    assert "secret" not in str(info.value) and "12345" not in str(info.value)


def test_mimic_reader_cleans_deid_tags_and_groups_by_patient(tmp_path: Path) -> None:
    path = tmp_path / "NOTEEVENTS.csv"
    path.write_text(
        "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CATEGORY,DESCRIPTION,ISERROR,TEXT\n"
        "1,10,100,2101-01-01,Radiology,CT,,"
        '"Seen by [**Doctor Last Name 123**] on [**2101-1-1**]."\n'
        '2,10,101,2101-01-02,Nursing,Note,1,"erroneous note"\n'
        '3,11,,2101-01-03,Discharge summary ,DS,,"Home."\n'
    )
    notes, _ = load_noteevents(path)
    assert [n.note_id for n in notes] == ["1", "3"]
    assert notes[0].text == "Seen by ___ on ___."
    assert notes[0].group == "10" and notes[1].category == "Discharge summary"
    by_admission, _ = load_noteevents(path, group_by="admission")
    assert by_admission[1].group == "row-3"  # no HADM_ID: its own group
    assert clean_deid("a [**x\ny**] b") == "a ___ b"


def test_deduplicate_and_fingerprint() -> None:
    notes = [Note("a", "Same text"), Note("b", "same  TEXT"), Note("c", "other")]
    kept, removed = deduplicate(notes)
    assert [n.note_id for n in kept] == ["a", "c"] and removed == 1
    assert fingerprint(kept) == fingerprint(list(reversed(kept)))
    assert fingerprint(kept) != fingerprint(notes)


def test_group_split_keeps_patients_on_one_side() -> None:
    notes = synthetic_notes(300, seed=3)
    split = split_by_group(notes, eval_fraction=0.1, test_fraction=0.2, seed=0)
    sides = [{n.group for n in part} for part in (split.train, split.eval, split.test)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    assert len(split.train) + len(split.eval) + len(split.test) == 300
    again = split_by_group(notes, eval_fraction=0.1, test_fraction=0.2, seed=0)
    assert again == split


def test_excluded_notes_take_their_patient_with_them() -> None:
    notes = [Note("1", "a", group="p"), Note("2", "b", group="p"), Note("3", "c", group="q")]
    assert [n.note_id for n in exclude(notes, {"1"})] == ["3"]


def test_corpus_excludes_evaluation_ids(tmp_path: Path) -> None:
    ids = tmp_path / "eval_ids.txt"
    ids.write_text("syn-0\nsyn-1\n")
    loaded = load_corpus(
        CorpusConfig(format="synthetic", synthetic_notes=100, exclude_ids_file=ids)
    )
    every = loaded.split.train + loaded.split.eval + loaded.split.test
    assert loaded.excluded >= 2
    assert not {"syn-0", "syn-1"} & {n.note_id for n in every}


def test_synthetic_notes_have_several_categories_and_varied_lengths() -> None:
    notes = synthetic_notes(200, seed=0)
    lengths = [len(n.text.split()) for n in notes]
    assert len({n.category for n in notes}) == 5
    assert min(lengths) < 60 and max(lengths) > 300


@pytest.mark.skipif(not MTSAMPLES.is_file(), reason="shared MTSamples data not present")
def test_mtsamples_merges_duplicates_and_derives_note_type() -> None:
    notes, _ = load_mtsamples(MTSAMPLES)
    assert 2340 <= len(notes) <= 2357  # README: 2,357 distinct transcriptions
    counts: dict[str, int] = {}
    for n in notes:
        counts[n.category or ""] = counts.get(n.category or "", 0) + 1
    assert counts["operative_note"] == 1060 and counts["radiology"] == 273
    assert not any(":," in n.text[:200] for n in notes[:50])
    split = split_by_group(notes, eval_fraction=0.1, test_fraction=0.2, seed=0, by="text")
    train_text = {n.text for n in split.train}
    assert not train_text & {n.text for n in split.test}


def test_split_config_rejects_no_training_data() -> None:
    with pytest.raises(CorpusError, match="leave some notes"):
        split_by_group(synthetic_notes(20), eval_fraction=0.5, test_fraction=0.5, seed=0)
    assert SplitConfig().by == "group"
