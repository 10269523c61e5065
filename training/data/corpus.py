"""Corpus configuration and loading: read, de-duplicate, exclude evaluation notes, split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.data.mimic import load_noteevents
from training.data.mtsamples import load_mtsamples
from training.data.notes import ColumnMap, Note, deduplicate
from training.data.splits import CorpusSplit, exclude, split_by_group
from training.data.synthetic import synthetic_notes
from training.data.tables import load_table_notes
from training.errors import CorpusError

log = logging.getLogger(__name__)

CorpusFormat = Literal["csv", "tsv", "jsonl", "parquet", "mimic", "mtsamples", "synthetic"]


class SplitConfig(BaseModel):
    """Group split of the corpus; the test part is never trained on (downstream evaluation)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: Literal["group", "text"] = "group"
    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 13


class CorpusConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: CorpusFormat
    path: Path | None = None
    columns: ColumnMap = ColumnMap()
    mimic_group: Literal["patient", "admission"] = "patient"
    synthetic_notes: int = Field(300, ge=1)
    # Note ids reserved for evaluation elsewhere (one per line); they and their groups are
    # removed before the split, so the pre-training corpus never sees them.
    exclude_ids_file: Path | None = None
    split: SplitConfig = SplitConfig()

    @model_validator(mode="after")
    def _path_given(self) -> CorpusConfig:
        if self.format != "synthetic" and self.path is None:
            raise ValueError(f"corpus.path is required for format {self.format!r}")
        return self


@dataclass(frozen=True)
class LoadedCorpus:
    split: CorpusSplit
    rows_dropped: int  # empty notes and duplicates
    excluded: int


def read_notes(config: CorpusConfig) -> tuple[list[Note], int]:
    """Read the configured corpus; return (notes, empty rows dropped)."""
    if config.format == "synthetic":
        return synthetic_notes(config.synthetic_notes, seed=config.split.seed), 0
    assert config.path is not None  # checked by the validator
    if config.format == "mimic":
        return load_noteevents(config.path, group_by=config.mimic_group)
    if config.format == "mtsamples":
        return load_mtsamples(config.path)
    return load_table_notes(config.path, config.columns, config.format)


def _read_ids(path: Path) -> set[str]:
    if not path.is_file():
        raise CorpusError(f"exclude_ids_file not found: {path}")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def load_corpus(config: CorpusConfig) -> LoadedCorpus:
    """Read, de-duplicate by text, drop excluded notes and split by group."""
    notes, empty = read_notes(config)
    notes, duplicates = deduplicate(notes)
    if not notes:
        raise CorpusError(f"corpus {config.path or config.format} holds no non-empty notes")
    excluded = 0
    if config.exclude_ids_file is not None:
        before = len(notes)
        notes = exclude(notes, _read_ids(config.exclude_ids_file), config.split.by)
        excluded = before - len(notes)
    split = split_by_group(
        notes,
        eval_fraction=config.split.eval_fraction,
        test_fraction=config.split.test_fraction,
        seed=config.split.seed,
        by=config.split.by,
    )
    log.info(
        "corpus: %d train, %d eval, %d test notes (%d empty, %d duplicate, %d excluded)",
        len(split.train),
        len(split.eval),
        len(split.test),
        empty,
        duplicates,
        excluded,
    )
    return LoadedCorpus(split=split, rows_dropped=empty + duplicates, excluded=excluded)
