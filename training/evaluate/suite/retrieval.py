"""Exact cosine search (numpy) and per-query ranking metrics: nDCG@k, MRR@k, Recall@k and
accuracy@1 within the query's group (binary relevance)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from training.evaluate.data import EvaluationError
from training.evaluate.suite.tasks import Query

Vectors = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]


def rank_documents(
    queries: Vectors, docs: Vectors, k: int, *, chunk: int = 256
) -> npt.NDArray[np.int64]:
    """[Q, k] document indices by descending cosine (vectors are unit length); ties go to the
    lower index, so equal scores always rank the same way."""
    if queries.shape[1] != docs.shape[1]:
        raise EvaluationError(
            f"query and document dims differ: {queries.shape[1]} vs {docs.shape[1]}"
        )
    k = min(k, len(docs))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        scores = queries[start : start + chunk] @ docs.T  # [q, D]
        # A stable sort of -score keeps equal scores in index order.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out[start : start + chunk] = order
    return out


def _metric(name: str) -> tuple[str, int]:
    base, _, k = name.partition("@")
    if base not in ("ndcg", "mrr", "recall", "within_group_acc") or not k.isdigit():
        raise EvaluationError(f"unknown retrieval metric {name!r}")
    return base, int(k)


def per_query_metrics(
    ranked: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]], metrics: Sequence[str]
) -> dict[str, Floats]:
    """Per-query values of each ranking metric (within-group accuracy is computed apart)."""
    out: dict[str, Floats] = {}
    for name in metrics:
        base, k = _metric(name)
        if base == "within_group_acc":
            continue
        values = np.zeros(len(ranked), dtype=np.float64)
        for q, (docs, rel) in enumerate(zip(ranked, relevant, strict=True)):
            hits = [d in rel for d in docs[:k]]
            if base == "ndcg":
                dcg = sum(1.0 / np.log2(r + 2) for r, hit in enumerate(hits) if hit)
                ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(rel), k)))
                values[q] = dcg / ideal
            elif base == "mrr":
                values[q] = next((1.0 / (r + 1) for r, hit in enumerate(hits) if hit), 0.0)
            else:
                values[q] = sum(hits) / len(rel)
        out[name] = values
    return out


def within_group_accuracy(
    query_vectors: Vectors,
    doc_vectors: Vectors,
    queries: Sequence[Query],
    doc_ids: Sequence[str],
    doc_groups: Sequence[str | None],
) -> Floats:
    """1 when the best-scoring document among those sharing the query's group is relevant."""
    by_group: dict[str | None, list[int]] = {}
    for i, g in enumerate(doc_groups):
        by_group.setdefault(g, []).append(i)
    values = np.zeros(len(queries), dtype=np.float64)
    for q, query in enumerate(queries):
        candidates = by_group.get(query.group, [])
        if not candidates:
            continue
        scores = doc_vectors[candidates] @ query_vectors[q]
        best = candidates[int(np.argmax(scores))]  # argmax: first of ties, the lower index
        values[q] = float(doc_ids[best] in query.relevant)
    return values


def evaluate_ranking(
    query_vectors: Vectors,
    doc_vectors: Vectors,
    queries: Sequence[Query],
    doc_ids: Sequence[str],
    metrics: Sequence[str],
    doc_groups: Sequence[str | None] | None = None,
) -> dict[str, Floats]:
    """Per-query values of every metric in `metrics` for one model."""
    depth = max(_metric(m)[1] for m in metrics)
    ranked_idx = rank_documents(query_vectors, doc_vectors, depth)
    ranked = [[doc_ids[i] for i in row] for row in ranked_idx]
    out = per_query_metrics(ranked, [q.relevant for q in queries], metrics)
    for name in metrics:
        if _metric(name)[0] == "within_group_acc":
            if doc_groups is None:
                raise EvaluationError(f"{name} needs document groups")
            out[name] = within_group_accuracy(
                query_vectors, doc_vectors, queries, doc_ids, doc_groups
            )
    return {m: out[m] for m in metrics}
