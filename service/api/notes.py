"""Indexing (/notes) and nearest-neighbour search (/search). Responses carry note ids, scores
and metadata, never note text or vectors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from service.api.access import CallDep, require
from service.api.deps import NotesDep, SettingsDep
from service.api.embed import MODEL_HEADER
from service.api.errors import error_responses
from service.api.schemas import (
    IndexNotesRequest,
    IndexNotesResponse,
    IndexStatsResponse,
    NoteMetadata,
    SearchRequest,
    SearchResponse,
    validate_metadata,
    validate_texts,
)
from service.errors import BadRequest, PayloadTooLarge
from service.orchestration.access import KeyScope
from service.orchestration.notes import NoteFilters, NoteInput, NoteMeta

router = APIRouter(tags=["notes"])
NOTE_ERRORS = error_responses(400, 404, 409, 413, 422, 503)
INDEX = [Depends(require(KeyScope.INDEX))]
SEARCH = [Depends(require(KeyScope.SEARCH))]


def _meta(note: NoteMeta) -> dict[str, Any]:
    return {
        "id": note.key,
        "category": note.category,
        "time": note.note_time,
        "source": note.source,
        "metadata": note.extra,
        "created_at": note.created_at,
        "updated_at": note.updated_at,
    }


@router.post("/notes", response_model=IndexNotesResponse, responses=NOTE_ERRORS, dependencies=INDEX)
async def index_notes(
    body: IndexNotesRequest,
    call: CallDep,
    notes: NotesDep,
    settings: SettingsDep,
    response: Response,
) -> dict[str, Any]:
    """Embed with the serving model and store: an idempotent upsert by note id. Answers only
    after the database commit."""
    validate_texts([n.text for n in body.notes], settings, "notes")
    seen: set[str] = set()
    for i, note in enumerate(body.notes):
        validate_metadata(note.metadata, settings, f"notes[{i}].metadata")
        if note.id in seen:
            raise BadRequest(
                f"notes[{i}].id repeats an earlier id in this batch", param=f"notes[{i}].id"
            )
        seen.add(note.id)
    inputs = [
        NoteInput(
            key=n.id,
            text=n.text,
            category=n.category,
            note_time=n.time,
            source=n.source,
            extra=n.metadata,
        )
        for n in body.notes
    ]
    outcome, manifest = await notes.upsert(inputs)
    call.audit(items=len(inputs), model=manifest.ref, note_ids=[n.key for n in inputs])
    response.headers[MODEL_HEADER] = manifest.ref
    return {
        "model": {"name": manifest.name, "version": manifest.version},
        "results": [
            {"id": n.key, "status": status}
            for n, status in zip(inputs, outcome.statuses, strict=True)
        ],
    }


@router.get(
    "/notes/{note_id:path}", response_model=NoteMetadata, responses=NOTE_ERRORS, dependencies=SEARCH
)
async def get_note(note_id: str, call: CallDep, notes: NotesDep) -> dict[str, Any]:
    """A note's metadata (never its text)."""
    call.audit(items=1, note_ids=[note_id])
    return _meta(await notes.get(note_id))


@router.delete("/notes/{note_id:path}", responses=NOTE_ERRORS, dependencies=INDEX)
async def delete_note(note_id: str, call: CallDep, notes: NotesDep) -> dict[str, Any]:
    """Delete a note: its text, metadata and vectors are removed; searches stop finding it."""
    call.audit(items=1, note_ids=[note_id])
    await notes.delete(note_id)
    return {"id": note_id, "deleted": True}


@router.post("/search", response_model=SearchResponse, responses=NOTE_ERRORS, dependencies=SEARCH)
async def search(
    body: SearchRequest,
    call: CallDep,
    notes: NotesDep,
    settings: SettingsDep,
    response: Response,
) -> dict[str, Any]:
    """Nearest notes to a free-text query or to an indexed note, optionally filtered."""
    if (body.query is None) == (body.note_id is None):
        raise BadRequest("give exactly one of query or note_id", param="query")
    if body.query is not None:
        validate_texts([body.query], settings, "query")
    if not 1 <= body.k <= settings.max_search_k:
        raise (PayloadTooLarge if body.k > 0 else BadRequest)(
            f"k must be between 1 and {settings.max_search_k}", param="k"
        )
    f = body.filters
    if f is not None:
        validate_metadata(f.metadata, settings, "filters.metadata")
    if f is not None and f.time_from and f.time_to and f.time_from > f.time_to:
        raise BadRequest("filters.time_from is after filters.time_to", param="filters.time_from")
    filters = NoteFilters(
        categories=f.categories if f else None,
        sources=f.sources if f else None,
        time_from=f.time_from if f else None,
        time_to=f.time_to if f else None,
        metadata=f.metadata if f else None,
    )
    hits, manifest = await notes.search(
        text=body.query, note_key=body.note_id, k=body.k, filters=filters
    )
    call.audit(items=len(hits), model=manifest.ref, note_ids=[h.note.key for h in hits])
    response.headers[MODEL_HEADER] = manifest.ref
    return {
        "model": {"name": manifest.name, "version": manifest.version},
        "results": [{**_meta(h.note), "score": h.score} for h in hits],
    }


@router.get(
    "/index/stats", response_model=IndexStatsResponse, responses=NOTE_ERRORS, dependencies=SEARCH
)
async def index_stats(notes: NotesDep) -> IndexStatsResponse:
    """The serving model's index: rows, stored notes it covers, kind, watermark, memory."""
    return IndexStatsResponse.model_validate(await notes.index_stats(), from_attributes=True)
