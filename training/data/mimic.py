"""Read MIMIC-III NOTEEVENTS.csv (and NHS exports shaped like it) into Notes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from training.data.notes import ColumnMap, Note, clean_text
from training.data.tables import Table, read_table, table_to_notes

# MIMIC-III wraps every de-identified span as [**...**]; MIMIC-IV's convention is "___",
# which keeps one placeholder the tokenizer sees as a single, content-free token run.
_DEID = re.compile(r"\[\*\*.*?\*\*\]", re.DOTALL)
DEID_PLACEHOLDER = "___"


def clean_deid(text: str) -> str:
    """Replace [** ... **] de-identification tags with a placeholder, then clean lightly."""
    return clean_text(_DEID.sub(DEID_PLACEHOLDER, text))


def load_noteevents(
    path: Path, *, group_by: Literal["patient", "admission"] = "patient"
) -> tuple[list[Note], int]:
    """NOTEEVENTS rows -> Notes: CATEGORY is the note category, SUBJECT_ID/HADM_ID the group.

    Returns (notes, number of empty notes dropped). Rows flagged ISERROR=1 are erroneous
    notes in MIMIC-III and are skipped.
    """
    table = read_table(path, "csv")
    if "ISERROR" in table.columns:
        rows = [r for r in table.rows if str(r.get("ISERROR") or "").strip() != "1"]
        table = Table(table.columns, rows)
    columns = ColumnMap(
        text="TEXT",
        note_id="ROW_ID",
        group="SUBJECT_ID" if group_by == "patient" else "HADM_ID",
        category="CATEGORY",
        time="CHARTDATE",
    )
    notes, empty = table_to_notes(table, columns, path, clean=False)
    cleaned = [
        Note(
            note_id=n.note_id,
            text=clean_deid(n.text),
            # Notes without an admission (outpatient) fall back to their own row as a group.
            group=n.group or f"row-{n.note_id}",
            category=n.category.strip() if n.category else None,
            time=n.time,
        )
        for n in notes
    ]
    kept = [n for n in cleaned if n.text]
    return kept, empty + len(cleaned) - len(kept)
