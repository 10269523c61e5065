"""The notes an int8 graph is calibrated and tuned on: the trust's own, held-out texts excluded,
cut into the service's own windows (real lengths, short tail windows included)."""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from service.inference.tokenize import NoteTokenizer

Window = npt.NDArray[np.int64]
_SPACE = re.compile(r"\s+")
_ID_COLUMNS = ("note_id", "id")
_TEXT_COLUMNS = ("text", "transcription")


class CalibrationError(ValueError):
    """The calibration notes cannot be read, or too few are left after the exclusions."""


def text_key(text: str) -> str:
    """Whitespace- and case-insensitive identity of a note, to exclude its duplicates too."""
    return hashlib.sha256(_SPACE.sub(" ", text).strip().lower().encode()).hexdigest()


def read_notes(
    path: Path, *, exclude_ids: set[str] | None = None, only_ids: set[str] | None = None
) -> list[str]:
    """Distinct notes of a CSV (`text` / `transcription`, optional `note_id` / `id` column) or
    JSONL file, in file order. A row whose id is in `exclude_ids` is dropped, and so is every
    other row with the same text (MTSamples lists one note under several specialties); with
    `only_ids`, only those rows are kept (the held-out notes of the same file)."""
    if not path.is_file():
        raise CalibrationError(f"calibration notes file not found: {path}")
    rows: list[tuple[str | None, str]] = []
    if path.suffix == ".csv":
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            text_col = next((c for c in _TEXT_COLUMNS if c in fields), None)
            id_col = next((c for c in _ID_COLUMNS if c in fields), None)
            if text_col is None:
                raise CalibrationError(f"{path} has no 'text' or 'transcription' column")
            rows = [(row[id_col] if id_col else None, row[text_col] or "") for row in reader]
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    note_id = next((record[c] for c in _ID_COLUMNS if c in record), None)
                    rows.append((None if note_id is None else str(note_id), record.get("text", "")))
    else:
        raise CalibrationError(f"calibration notes must be .csv or .jsonl: {path}")
    if (exclude_ids or only_ids) and all(note_id is None for note_id, _ in rows):
        raise CalibrationError(f"{path} has no note_id / id column to select notes by id")
    if only_ids is not None:
        rows = [(note_id, text) for note_id, text in rows if note_id in only_ids]
    excluded = {text_key(text) for note_id, text in rows if exclude_ids and note_id in exclude_ids}
    texts: dict[str, str] = {}
    for _, text in rows:
        if text.strip() and (key := text_key(text)) not in excluded:
            texts.setdefault(key, text.strip())
    return list(texts.values())


def read_ids(path: Path) -> set[str]:
    """One note id per line (e.g. training/configs/mtsamples-test-ids.txt); # starts a comment."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


@dataclass(frozen=True)
class NoteSplit:
    """Disjoint parts of the trust's notes: calibration sets the scales, selection chooses the
    float layers (validation data, never the gate's notes)."""

    calibration: list[str]
    selection: list[str]


def split_notes(
    texts: list[str], held_out: list[str], selection_share: float = 0.25, seed: int = 0
) -> NoteSplit:
    """Drop every held-out text (the gate's notes), then split the rest by a seeded shuffle."""
    held = {text_key(t) for t in held_out}
    usable = [t for t in texts if text_key(t) not in held]
    random.Random(seed).shuffle(usable)  # noqa: S311 - a reproducible split, not a secret
    cut = round(len(usable) * selection_share)
    return NoteSplit(calibration=usable[cut:], selection=usable[:cut])


@dataclass(frozen=True)
class CalibrationSet:
    windows: list[Window]
    record: dict[str, Any]  # for the manifest: counts, lengths, a fingerprint; never text


def calibration_windows(
    tokenizer: NoteTokenizer, texts: list[str], count: int, source: str
) -> CalibrationSet:
    """Every window of each note in turn, until `count` windows: the mix of full windows and
    short tails that the service really runs."""
    windows: list[Window] = []
    notes = 0
    for note in tokenizer.tokenize(texts, "chunk"):
        if len(windows) >= count:
            break
        windows.extend(note.windows[: count - len(windows)])
        notes += 1
    if not windows:
        raise CalibrationError("no calibration notes left after the exclusions")
    lengths = np.asarray([len(w) for w in windows])
    digest = hashlib.sha256()
    for window in windows:
        digest.update(window.astype("<i8").tobytes())
        digest.update(b"|")
    return CalibrationSet(
        windows=windows,
        record={
            "source": source,
            "notes": notes,
            "windows": len(windows),
            "window_tokens_mean": round(float(lengths.mean()), 1),
            "window_tokens_min": int(lengths.min()),
            "window_tokens_max": int(lengths.max()),
            "full_windows": int((lengths == tokenizer.max_tokens).sum()),
            "windows_sha256": digest.hexdigest(),
        },
    )


def first_windows(tokenizer: NoteTokenizer, texts: list[str]) -> list[Window]:
    """Each note's first window: the unit the quality gate compares (as the export gate does)."""
    return [note.windows[0] for note in tokenizer.tokenize(texts, "truncate")]
