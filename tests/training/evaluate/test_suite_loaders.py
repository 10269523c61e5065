"""Each built-in loader on small files shaped like the real ones (and, marked `realdata`, on
the real files when ../shared/data is present: the counts its README states)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from training.data.notes import text_key
from training.evaluate.data import EvaluationError
from training.evaluate.suite.catalogue import load_task
from training.evaluate.suite.config import parse_suite
from training.evaluate.suite.hashsplit import is_fifth, normalise
from training.evaluate.suite.loaders import medec, medquad, meqsum, mtsamples
from training.evaluate.suite.loaders.files import data_file
from training.evaluate.suite.tasks import ClassificationTask, RetrievalTask

REAL = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MEDQUAD = "medquad/derived/medquad_qa_subset.csv.gz"
MEDEC_DIR = "medec_ms/upstream/MEDEC-MS"
realdata = pytest.mark.realdata


def _disjoint(task: ClassificationTask, key: str = "group") -> None:
    sides = [{getattr(e, key) for e in part} for part in (task.train, task.val, task.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])


def test_mtsamples_tasks_share_one_split_of_distinct_texts(data_root: Path) -> None:
    path = data_root / "mtsamples" / "mtsamples.csv"
    kinds = mtsamples.load_mtsamples_task("t", path, target="category", min_per_class=2)
    specialty = mtsamples.load_mtsamples_task("s", path, target="label", min_per_class=2)
    for task in (kinds, specialty):
        _disjoint(task)
        assert all(is_fifth(text_key(e.text)) for e in task.test)
        assert not any(is_fifth(text_key(e.text)) for e in task.train + task.val)
    assert {e.item_id for e in kinds.test} == {e.item_id for e in specialty.test}
    assert {e.item_id for e in kinds.val} == {e.item_id for e in specialty.val}
    assert kinds.classes == ["consult_hp", "operative_note", "radiology"]
    assert specialty.classes == ["Cardiovascular / Pulmonary", "Neurology", "Orthopedic"]
    assert set(mtsamples.held_out_note_ids(path)) == {e.item_id for e in kinds.test}


def test_medquad_qtype_splits_by_focus_and_names_dropped_types(data_root: Path) -> None:
    task = medquad.load_qtype_task("q", data_root / MEDQUAD, min_per_class=2)
    _disjoint(task)
    assert all(is_fifth(e.group or "") for e in task.test)
    assert all(medquad.focus_side(e.group or "") == "val" for e in task.val)
    assert task.classes == sorted(medquad.QTYPES)
    assert "research" in task.dropped_classes
    assert "collection-specific" in task.dropped_classes["research"]


def test_medquad_retrieval_protocol_a(data_root: Path) -> None:
    task = medquad.load_retrieval_task("r", data_root / MEDQUAD)
    queries = task.val + task.test
    assert len(task.doc_ids) == 40 * 8 + 1  # every answer, the dropped qtypes' too
    # The question with two answers (normalised text) is one query with both relevant.
    two = [q for q in queries if len(q.relevant) == 2]
    assert len(two) == 1 and two[0].text == normalise(two[0].text)
    assert len(queries) == 40 * 8
    qtype = medquad.load_qtype_task("q", data_root / MEDQUAD, min_per_class=2)
    assert {q.group for q in task.val} == {e.group for e in qtype.val}  # same val foci
    assert task.doc_groups is not None and "within_group_acc@1" in task.metrics


def test_meqsum_both_directions(data_root: Path) -> None:
    task = meqsum.load_meqsum_task("m", data_root / "meqsum" / "derived" / "meqsum.csv")
    assert len(task.doc_ids) == 60
    queries = task.val + task.test
    assert len(queries) == 59  # rows 1 and 2 share a summary
    assert sorted(len(q.relevant) for q in queries)[-1] == 2
    assert all(is_fifth(sorted(q.relevant)[0]) or len(q.relevant) > 1 for q in task.val)
    (reverse,) = task.secondary
    assert len(reverse.doc_ids) == 59
    assert len(reverse.val) + len(reverse.test) == 60
    assert all(is_fifth(q.query_id) for q in reverse.val)
    assert all(len(q.relevant) == 1 for q in reverse.val + reverse.test)


def test_medec_probe_from_the_validation_file(data_root: Path) -> None:
    task = medec.load_medec_task("e", data_root / MEDEC_DIR, min_per_class=2)
    assert task.classes == ["diagnosis", "management", "pharmacotherapy", "treatment"]
    assert task.dropped_classes == {"causalOrganism": "1 train example(s) < 2"}
    assert all(e.item_id.startswith("ms-val-") for e in task.train + task.val)
    assert all(e.item_id.startswith("ms-test-") for e in task.test)
    assert len(task.test) == 4 * 6  # flag-0 and blank rows are not examples
    # Each class keeps validation examples: 20 % of 12 per class.
    assert Counter(e.y for e in task.val) == dict.fromkeys(task.classes, 2)


def test_a_missing_data_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match=r"task x: data file not found: .*nope\.csv"):
        data_file("x", tmp_path, "nope.csv")
    suite = parse_suite({"name": "s", "tasks": [{"name": "medec-type", "path": "gone"}]})
    with pytest.raises(EvaluationError, match="medec-type: data file not found"):
        load_task(suite.tasks[0], suite, tmp_path)


def test_suite_definitions_are_checked() -> None:
    with pytest.raises(EvaluationError, match="unknown built-in task 'nope'"):
        parse_suite({"name": "s", "tasks": [{"name": "nope", "path": "x"}]})
    with pytest.raises(EvaluationError, match="task names repeat"):
        parse_suite({"name": "s", "tasks": [{"name": "medec-type", "path": "x"}] * 2})
    with pytest.raises(EvaluationError, match="N must be a positive integer"):
        parse_suite(
            {"name": "s", "settings": {"n": [0]}, "tasks": [{"name": "medec-type", "path": "x"}]}
        )
    bad_ft = {"finetune": {"tasks": ["other"]}}
    with pytest.raises(EvaluationError, match=r"finetune\.tasks names unknown"):
        parse_suite(
            {"name": "s", "settings": bad_ft, "tasks": [{"name": "medec-type", "path": "x"}]}
        )


# -- the real files (README counts) -----------------------------------------------------------


def _real(relative: str) -> Path:
    path = REAL / relative
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{relative}")
    return path


@realdata
def test_real_mtsamples_counts() -> None:
    train, val, test = mtsamples.split_notes(_real("mtsamples/mtsamples.csv"))
    notes = train + val + test
    # The README counts 2,357 distinct raw strings; the loader merges texts equal up to case
    # and whitespace, which joins one more pair.
    assert len(notes) == 2356
    types = Counter(n.category for n in notes)
    assert types["operative_note"] == 1060 and types["consult_hp"] == 440
    assert types["radiology"] == 273 and types["other"] == 150
    assert 0.18 < len(test) / len(notes) < 0.22


@realdata
def test_real_medquad_counts_match_the_readme() -> None:
    path = _real(MEDQUAD)
    qtype = medquad.load_qtype_task("q", path, min_per_class=64)
    counts = qtype.counts()
    assert sum(counts["train"].values()) + sum(counts["val"].values()) == 2394
    assert counts["test"] == {
        "information": 130,
        "treatment": 91,
        "symptoms": 70,
        "exams and tests": 73,
        "susceptibility": 62,
        "causes": 49,
        "prevention": 41,
    }
    retrieval = medquad.load_retrieval_task("r", path)
    assert len(retrieval.doc_ids) == 3519
    foci = set(retrieval.doc_groups or [])
    assert len(foci) == 427 and sum(is_fifth(f or "") for f in foci) == 89
    assert len(retrieval.val) + len(retrieval.test) == 2549


@realdata
def test_real_meqsum_counts_match_the_readme() -> None:
    task = meqsum.load_meqsum_task("m", _real("meqsum/derived/meqsum.csv"))
    assert len(task.doc_ids) == 1000 and len(task.val) + len(task.test) == 994
    (reverse,) = task.secondary
    assert len(reverse.doc_ids) == 994 and len(reverse.val) + len(reverse.test) == 1000


@realdata
def test_real_medec_counts_match_the_readme() -> None:
    task = medec.load_medec_task("e", _real(MEDEC_DIR), min_per_class=16)
    assert task.counts()["test"] == {
        "diagnosis": 116,
        "management": 97,
        "pharmacotherapy": 36,
        "treatment": 51,
    }
    pool = Counter(e.y for e in task.train + task.val)
    assert sum(pool.values()) == 306 and min(pool.values()) >= 25
    assert "causalOrganism" in task.dropped_classes


@realdata
def test_real_default_suite_loads() -> None:
    from training.evaluate.suite.config import load_suite
    from training.evaluate.suite.runner import load_tasks

    suite, _ = load_suite("default")
    loaded = load_tasks(suite, _real(""))
    assert [type(x.task) for x in loaded.values()] == [
        ClassificationTask,
        ClassificationTask,
        RetrievalTask,
        ClassificationTask,
        RetrievalTask,
        RetrievalTask,
        ClassificationTask,
    ]
