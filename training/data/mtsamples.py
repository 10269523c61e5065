"""Read the MTSamples stand-in corpus: one Note per distinct transcription, with a note type."""

from __future__ import annotations

import re
from pathlib import Path

from training.data.notes import Note, clean_text, text_key
from training.data.tables import read_table
from training.errors import CorpusError

# The README's priority order for a single document type ("note category") per distinct note.
NOTE_TYPE_PRIORITY: tuple[tuple[str, str], ...] = (
    ("Discharge Summary", "discharge_summary"),
    ("Emergency Room Reports", "emergency_report"),
    ("Radiology", "radiology"),
    ("SOAP / Chart / Progress Notes", "progress_note"),
    ("Office Notes", "office_note"),
    ("Letters", "letter"),
    ("Lab Medicine - Pathology", "pathology_autopsy"),
    ("Autopsy", "pathology_autopsy"),
    ("Consult - History and Phy.", "consult_hp"),
    ("Surgery", "operative_note"),
)
NO_NOTE_TYPE = "other"
# The scrape ran headings into the text as "HEADING:," - drop the stray comma.
_HEADING_COMMA = re.compile(r":\s*,")


def note_type(specialties: set[str]) -> str:
    for specialty, name in NOTE_TYPE_PRIORITY:
        if specialty in specialties:
            return name
    return NO_NOTE_TYPE


def mtsamples_text(raw: object) -> str:
    """A transcription as the reader keeps it: the stray heading commas dropped, cleaned."""
    return clean_text(_HEADING_COMMA.sub(":", str(raw)))


def load_mtsamples(path: Path) -> tuple[list[Note], int]:
    """Return (notes, rows dropped): duplicates merged, split group = the distinct text.

    category is the note type from the README's priority order; label is the first clinical
    specialty (not a document-type heading) listed for the text, when there is one.
    """
    table = read_table(path, "csv")
    needed = {"note_id", "transcription", "medical_specialty"}
    if missing := sorted(needed - set(table.columns)):
        raise CorpusError(f"{path}: missing column(s) {missing} for the MTSamples reader")
    doc_types = {specialty for specialty, _ in NOTE_TYPE_PRIORITY}
    by_text: dict[str, tuple[str, str, set[str]]] = {}
    dropped = 0
    for record in table.rows:
        note_id, raw, specialty = (
            record["note_id"],
            record["transcription"],
            record["medical_specialty"],
        )
        text = mtsamples_text(raw)
        if not text:
            dropped += 1
            continue
        key = text_key(text)
        if key in by_text:
            by_text[key][2].add(str(specialty).strip())
            dropped += 1
        else:
            by_text[key] = (str(note_id), text, {str(specialty).strip()})
    notes = []
    for key, (note_id, text, specialties) in by_text.items():
        clinical = sorted(specialties - doc_types)
        notes.append(
            Note(
                note_id=note_id,
                text=text,
                group=f"text:{key}",
                category=note_type(specialties),
                label=clinical[0] if clinical else None,
            )
        )
    return notes, dropped
