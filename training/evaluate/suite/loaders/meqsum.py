"""MeQSum retrieval (README): expert summary → consumer health question, and the reverse.

Validation = the README's dev split (rows with sha256(File) % 5 == 0); the rest is test.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from training.evaluate.suite.hashsplit import is_fifth, normalise
from training.evaluate.suite.loaders.files import read_csv_table, require_columns
from training.evaluate.suite.tasks import Query, RetrievalTask

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10")


def load_meqsum_task(name: str, path: Path) -> RetrievalTask:
    table = read_csv_table(path)
    require_columns(name, path, table, ("File", "CHQ", "Summary"))
    rows = [
        (str(r["File"]), str(r["CHQ"]), normalise(str(r["Summary"])))
        for r in table.rows
        if str(r.get("CHQ") or "").strip() and str(r.get("Summary") or "").strip()
    ]
    files_of: dict[str, list[str]] = defaultdict(list)
    for file, _, summary in rows:
        files_of[summary].append(file)
    summary_id = {s: f"s:{files[0]}" for s, files in files_of.items()}
    forward_val: list[Query] = []
    forward_test: list[Query] = []
    for summary, files in files_of.items():
        # A summary shared by several CHQs follows its first row (sheet order).
        query = Query(summary_id[summary], summary, frozenset(files))
        (forward_val if is_fifth(files[0]) else forward_test).append(query)
    reverse_val: list[Query] = []
    reverse_test: list[Query] = []
    for file, chq, summary in rows:
        query = Query(file, chq, frozenset({summary_id[summary]}))
        (reverse_val if is_fifth(file) else reverse_test).append(query)
    reverse = RetrievalTask(
        name=f"{name}/reverse",
        doc_ids=list(summary_id.values()),
        doc_texts=list(summary_id),
        val=reverse_val,
        test=reverse_test,
        metrics=METRICS,
        protocol="reverse direction: CHQ → the distinct summaries, one relevant each",
    )
    return RetrievalTask(
        name=name,
        doc_ids=[file for file, _, _ in rows],
        doc_texts=[chq for _, chq, _ in rows],
        val=forward_val,
        test=forward_test,
        metrics=METRICS,
        protocol=(
            "MeQSum: queries = distinct normalised summaries, corpus = every CHQ, relevant = the "
            "CHQs with that summary (zero-shot). Validation = the README's dev rows "
            "(sha256(File) % 5 == 0; a shared summary follows its first row), test = the rest. "
            "Secondary: the reverse direction."
        ),
        secondary=[reverse],
    )
