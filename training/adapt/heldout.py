"""Label-free measures on a trust's held-out notes, for choosing the mixing weight.

In-domain: **span → note retrieval**. Each held-out note gives up to four queries, disjoint
passages of it (16-48 words, one in each equal region of the note, at positions seeded by
the note's id), and one document, the note with its passages cut out; a query is answered by
ranking every held-out document. A model that represents the trust's notes well finds the note
a passage came from (the passages share no words with their document, so this is not string
matching). Metric: reciprocal rank (MRR@10), averaged over a note's queries: one score per
note, the unit the intervals resample. Four passages rather than one make each note's score
less noisy, so a trust's few hundred held-out notes can tell a real gain from chance.

General competence: **neighbour agreement with the base**. For each held-out document, the
overlap of its 10 nearest held-out documents under the candidate and under the base (1 for
the base itself). Adaptation should move the space where the trust's notes need it, not tear
up everything the base knew; the agreement says how far a candidate has moved.

Both are per-note scores, so candidates are compared with the base by the paired intervals of
service/paired_intervals.py. Embeddings come from each bundle through the service runtime.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from training.data.notes import Note

Vectors = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float64]

MIN_QUERY_WORDS = 16
MAX_QUERY_WORDS = 48
# A note must keep at least this many words once its passages are cut out.
MIN_REST_WORDS = 32
NEIGHBOURS = 10
QUERIES_PER_NOTE = 4


@dataclass(frozen=True)
class SpanQueries:
    """Passages (queries) and one remainder (document) per usable held-out note;
    owner[i] is the index of query i's document."""

    note_ids: list[str]
    queries: list[str]
    documents: list[str]
    owner: list[int]


def _rng(note_id: str, seed: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{note_id}".encode()).hexdigest()[:16]
    return np.random.default_rng(int(digest, 16))


def span_queries(notes: Sequence[Note], seed: int = 0) -> SpanQueries:
    """Cut up to QUERIES_PER_NOTE disjoint passages out of each held-out note long enough to
    keep MIN_REST_WORDS words: one passage of the note's (seeded) length per equal region."""
    ids: list[str] = []
    queries: list[str] = []
    documents: list[str] = []
    owner: list[int] = []
    for note in notes:
        words = note.text.split()
        if len(words) < MIN_QUERY_WORDS + MIN_REST_WORDS:
            continue
        rng = _rng(note.note_id, seed)
        length = int(rng.integers(MIN_QUERY_WORDS, min(MAX_QUERY_WORDS, len(words) // 3) + 1))
        count = max(1, min(QUERIES_PER_NOTE, (len(words) - MIN_REST_WORDS) // length))
        region = len(words) // count  # >= length, since count * length <= len(words)
        cut = np.zeros(len(words), dtype=bool)
        for r in range(count):
            start = r * region + int(rng.integers(0, region - length + 1))
            queries.append(" ".join(words[start : start + length]))
            owner.append(len(documents))
            cut[start : start + length] = True
        ids.append(note.note_id)
        documents.append(" ".join(w for w, gone in zip(words, cut, strict=True) if not gone))
    return SpanQueries(ids, queries, documents, owner)


def reciprocal_ranks(
    queries: Vectors, documents: Vectors, owner: Sequence[int] | None = None, k: int = 10
) -> Floats:
    """Per query i (whose document is owner[i], default i): 1 / rank of its document among
    all, 0 beyond k."""
    own_doc = np.arange(len(queries)) if owner is None else np.asarray(owner)
    scores = queries @ documents.T  # [q, n] cosine (unit vectors)
    own = scores[np.arange(len(queries)), own_doc][:, None]  # [q, 1]
    # rank = 1 + documents scoring strictly higher (ties resolved in the query's favour)
    rank = 1 + (scores > own).sum(axis=1)
    out: Floats = np.where(rank <= k, 1.0 / rank, 0.0)
    return out


def note_mrr(queries: Vectors, documents: Vectors, owner: Sequence[int], k: int = 10) -> Floats:
    """Per document (note): the mean reciprocal rank of its queries."""
    rr = reciprocal_ranks(queries, documents, owner, k)
    sums = np.bincount(owner, weights=rr, minlength=len(documents))
    counts = np.bincount(owner, minlength=len(documents))
    out: Floats = sums / np.maximum(counts, 1)
    return out


def neighbours(vectors: Vectors, k: int = NEIGHBOURS) -> npt.NDArray[np.int64]:
    """[n, k] indices of each vector's k nearest others by cosine (itself excluded)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    k = min(k, len(vectors) - 1)
    order: npt.NDArray[np.int64] = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order


def neighbour_agreement(candidate: Vectors, base: Vectors, k: int = NEIGHBOURS) -> Floats:
    """Per document: |kNN under candidate ∩ kNN under base| / k."""
    mine, theirs = neighbours(candidate, k), neighbours(base, k)
    out: Floats = np.asarray(
        [len(set(a) & set(b)) / mine.shape[1] for a, b in zip(mine, theirs, strict=True)],
        dtype=np.float64,
    )
    return out
