"""One model version's stored vectors, read or dropped straight from the vector log: what a
rebuild wrote, compared across rebuild paths (tests and bench/ray_rebuild.py)."""

from __future__ import annotations

import numpy as np
from sqlalchemy import delete, select

from service.registry.database import make_engine
from service.registry.note_vectors import decode_vectors
from service.registry.tables import NoteVector


def stored_vectors(url: str, version_id: int) -> dict[int, np.ndarray]:
    """note id -> its float32 vector under the version."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(NoteVector.note_id, NoteVector.vector).where(
                NoteVector.model_version_id == version_id
            )
        ).all()
    engine.dispose()
    return {rid: decode_vectors([blob], len(blob) // 4)[0] for rid, blob in rows}


def drop_stored_vectors(url: str, version_id: int) -> None:
    """Forget every vector of the version, so the next rebuild embeds all its notes again."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(delete(NoteVector).where(NoteVector.model_version_id == version_id))
    engine.dispose()
