"""Task records: a classification task (train pool, validation, test) or a retrieval task
(corpus, validation and test queries with their relevant documents)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from training.evaluate.data import EvaluationError

TaskKind = Literal["classification", "retrieval"]
Split = Literal["test", "val"]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled text; `group` keeps related texts (a patient, a focus) on one side."""

    item_id: str
    text: str
    y: str
    group: str | None = None


@dataclass(frozen=True)
class ClassificationTask:
    name: str
    classes: list[str]
    train: list[Example]  # the few-shot pool
    val: list[Example]  # model selection (the LR probe's C)
    test: list[Example]
    dropped_classes: dict[str, str] = field(default_factory=dict)  # class -> why
    protocol: str = ""  # how the splits were made, for the report
    kind: TaskKind = "classification"

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            part: dict(sorted(Counter(e.y for e in examples).items()))
            for part, examples in (("train", self.train), ("val", self.val), ("test", self.test))
        }

    def split(self, split: Split) -> list[Example]:
        """The examples scored: the test split, or validation when choosing on val data."""
        return self.test if split == "test" else self.val


@dataclass(frozen=True, slots=True)
class Query:
    query_id: str
    text: str
    relevant: frozenset[str]  # corpus document ids
    group: str | None = None  # e.g. the MedQuAD focus: within-group accuracy ranks only these


@dataclass(frozen=True)
class RetrievalTask:
    name: str
    doc_ids: list[str]
    doc_texts: list[str]
    val: list[Query]
    test: list[Query]
    doc_groups: list[str | None] | None = None  # set when within-group accuracy@1 is reported
    metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10")
    primary: str = "ndcg@10"
    protocol: str = ""
    secondary: list[RetrievalTask] = field(default_factory=list)  # e.g. the reverse direction
    kind: TaskKind = "retrieval"

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.doc_texts):
            raise EvaluationError(f"task {self.name}: {len(self.doc_ids)} ids, texts differ")
        if len(set(self.doc_ids)) != len(self.doc_ids):
            raise EvaluationError(f"task {self.name}: document ids are not unique")
        if self.doc_groups is not None and len(self.doc_groups) != len(self.doc_ids):
            raise EvaluationError(f"task {self.name}: one group per document needed")
        known = set(self.doc_ids)
        for part in (self.val, self.test):
            for q in part:
                if not q.relevant or not q.relevant <= known:
                    raise EvaluationError(
                        f"task {self.name}: query {q.query_id} has no relevant document in "
                        "the corpus"
                    )
        if self.primary not in self.metrics:
            raise EvaluationError(f"task {self.name}: primary {self.primary} is not a metric")

    def split(self, split: Split) -> list[Query]:
        return self.test if split == "test" else self.val


Task = ClassificationTask | RetrievalTask


def fix_classes(
    name: str,
    train: Sequence[Example],
    val: Sequence[Example],
    test: Sequence[Example],
    *,
    min_per_class: int,
    protocol: str = "",
    dropped: dict[str, str] | None = None,
) -> ClassificationTask:
    """Keep the classes with at least `min_per_class` train examples and at least one
    validation and one test example; every other class is dropped and named with its reason."""
    counts = {part: Counter(e.y for e in xs) for part, xs in (("train", train), ("val", val))}
    test_counts = Counter(e.y for e in test)
    why: dict[str, str] = dict(dropped or {})
    kept: list[str] = []
    for c in sorted(set(counts["train"]) | set(counts["val"]) | set(test_counts)):
        k = counts["train"][c]
        if k < min_per_class:
            why[c] = f"{k} train example(s) < {min_per_class}"
        elif counts["val"][c] == 0:
            why[c] = "no validation example"
        elif test_counts[c] == 0:
            why[c] = "no test example"
        else:
            kept.append(c)
    if len(kept) < 2:
        raise EvaluationError(
            f"task {name}: {len(kept)} class(es) with at least {min_per_class} train examples "
            "and validation and test examples; classification needs two or more"
        )
    keep = set(kept)
    return ClassificationTask(
        name=name,
        classes=kept,
        train=[e for e in train if e.y in keep],
        val=[e for e in val if e.y in keep],
        test=[e for e in test if e.y in keep],
        dropped_classes=dict(sorted(why.items())),
        protocol=protocol,
    )
