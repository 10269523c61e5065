"""MedQuAD tasks (README): answer → qtype classification (protocol B) and question → answer
retrieval (protocol A). Both split by focus, so a focus's answers stay on one side."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from training.evaluate.suite.hashsplit import hash_unit, is_fifth, normalise
from training.evaluate.suite.loaders.files import read_csv_table, require_columns
from training.evaluate.suite.tasks import (
    ClassificationTask,
    Example,
    Query,
    RetrievalTask,
    fix_classes,
)

# Protocol B: the qtypes found in at least 3 collections (collection style is no shortcut).
QTYPES = (
    "information",
    "treatment",
    "symptoms",
    "exams and tests",
    "susceptibility",
    "causes",
    "prevention",
)
VAL_FRACTION = 0.15  # of the non-test foci
COLUMNS = ("row_id", "focus", "qtype", "question", "answer")


def focus_side(focus: str) -> str:
    """'test' (the README's rule), 'val' (carved from the non-test foci) or 'train'."""
    f = normalise(focus)
    if is_fifth(f):
        return "test"
    return "val" if hash_unit(f, "medquad-val") < VAL_FRACTION else "train"


def _rows(task: str, path: Path) -> list[dict[str, str]]:
    table = read_csv_table(path)
    require_columns(task, path, table, COLUMNS)
    return [{c: str(r.get(c) or "") for c in COLUMNS} for r in table.rows]


def load_qtype_task(name: str, path: Path, *, min_per_class: int) -> ClassificationTask:
    rows = [r for r in _rows(name, path) if r["qtype"] in QTYPES and r["answer"].strip()]
    parts: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for r in rows:
        focus = normalise(r["focus"])
        parts[focus_side(focus)].append(Example(r["row_id"], r["answer"], r["qtype"], focus))
    pool = {normalise(e.text) for e in parts["train"] + parts["val"]}
    leaked = sum(normalise(e.text) in pool for e in parts["test"])
    dropped = {
        q: "collection-specific qtype (README protocol B)"
        for q in sorted({r["qtype"] for r in _rows(name, path)} - set(QTYPES))
    }
    protocol = (
        "MedQuAD protocol B: text = answer, label = qtype (the 7 types in >= 3 collections); "
        "test = foci with sha256(normalised focus) % 5 == 0; validation = "
        f"{VAL_FRACTION:.0%} of the other foci (salted hash), never from test. "
        f"{leaked} test answer(s) have an exact duplicate text in train/validation (kept, as "
        "the README's counts do)."
    )
    return fix_classes(
        name,
        parts["train"],
        parts["val"],
        parts["test"],
        min_per_class=min_per_class,
        protocol=protocol,
        dropped=dropped,
    )


def load_retrieval_task(name: str, path: Path) -> RetrievalTask:
    rows = [r for r in _rows(name, path) if r["answer"].strip()]
    by_question: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_question[normalise(r["question"])].append(r)
    val: list[Query] = []
    test: list[Query] = []
    for question, answers in by_question.items():
        focus = normalise(answers[0]["focus"])
        query = Query(
            f"q:{answers[0]['row_id']}",
            question,
            frozenset(a["row_id"] for a in answers),
            focus,
        )
        (val if focus_side(focus) == "val" else test).append(query)
    duplicates = sum(k - 1 for k in Counter(normalise(r["answer"]) for r in rows).values())
    protocol = (
        "MedQuAD protocol A: queries = distinct normalised questions, corpus = every answer, "
        "relevant = the answers of that question; within-focus accuracy@1 ranks only the answers "
        "sharing the query's focus. Validation queries = the foci medquad-qtype validates on "
        f"({VAL_FRACTION:.0%} of the non-test foci); test queries = all other foci. "
        f"{duplicates} answer(s) duplicate another answer's text (counted as not relevant)."
    )
    return RetrievalTask(
        name=name,
        doc_ids=[r["row_id"] for r in rows],
        doc_texts=[r["answer"] for r in rows],
        doc_groups=[normalise(r["focus"]) for r in rows],
        val=val,
        test=test,
        metrics=("ndcg@10", "mrr@10", "recall@10", "within_group_acc@1"),
        protocol=protocol,
    )
