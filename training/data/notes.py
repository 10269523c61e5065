"""The Note record, light text cleaning, de-duplication and the corpus fingerprint."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

_WHITESPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Note:
    """One clinical note with the metadata the objectives and splits use."""

    note_id: str
    text: str
    group: str | None = None  # patient / admission id: notes sharing it never straddle a split
    category: str | None = None
    label: str | None = None
    time: str | None = None


class ColumnMap(BaseModel):
    """Which table columns hold which Note fields (None: the corpus has no such column)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field("text", min_length=1)
    note_id: str | None = "note_id"
    group: str | None = None
    category: str | None = None
    label: str | None = None
    time: str | None = None

    def required(self) -> dict[str, str]:
        """Field name -> column name for every column the corpus must have."""
        mapping = {
            "text": self.text,
            "note_id": self.note_id,
            "group": self.group,
            "category": self.category,
            "label": self.label,
            "time": self.time,
        }
        return {k: v for k, v in mapping.items() if v is not None}


def clean_text(text: str) -> str:
    """Light cleaning: drop control characters, collapse runs of spaces and blank lines."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n"))
    text = _WHITESPACE.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def text_key(text: str) -> str:
    """A stable identity for a note's text (case and whitespace insensitive)."""
    normalised = " ".join(text.lower().split())
    return hashlib.sha256(normalised.encode("utf-8")).hexdigest()[:16]


def deduplicate(notes: Iterable[Note]) -> tuple[list[Note], int]:
    """Keep the first note of each distinct text; return (notes, number removed)."""
    seen: set[str] = set()
    kept: list[Note] = []
    removed = 0
    for note in notes:
        key = text_key(note.text)
        if key in seen:
            removed += 1
            continue
        seen.add(key)
        kept.append(note)
    return kept, removed


def fingerprint(notes: Iterable[Note]) -> str:
    """sha256 over the sorted note ids: identifies the exact training corpus in lineage."""
    digest = hashlib.sha256()
    for note_id in sorted(note.note_id for note in notes):
        digest.update(note_id.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
