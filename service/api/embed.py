"""POST /embed: clinical notes in, one unit vector per note out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from service.api.access import CallDep
from service.api.deps import EmbedderDep, SettingsDep
from service.api.errors import error_responses
from service.api.responses import FastJSONResponse
from service.api.schemas import EmbedRequest, EmbedResponse, validate_texts
from service.orchestration.access import KeyScope
from service.orchestration.embedding import Embedded

router = APIRouter(tags=["embeddings"])

EMBED_ERRORS = error_responses(400, 409, 413, 422, 503)


# NAME@VERSION of the model that produced a response's vectors, scores or categories (the
# body names it too): during a promotion, replicas may briefly differ, and each answer says.
MODEL_HEADER = "X-Notespace-Model"


def model_header(ref: str) -> dict[str, str]:
    return {MODEL_HEADER: ref}


async def audit_embedding(call: CallDep, embedded: Embedded) -> None:
    """The audit entry of an embedding call (how many notes, which model); the tokens
    embedded are charged to the key's quota."""
    call.audit(items=len(embedded.notes), model=embedded.manifest.ref)
    await call.charge_tokens(embedded.tokens)


@router.post("/embed", response_model=EmbedResponse, responses=EMBED_ERRORS)
async def embed(
    request: EmbedRequest, call: CallDep, embedder: EmbedderDep, settings: SettingsDep
) -> Response:
    texts = [n.text for n in request.notes]
    validate_texts(texts, settings, "notes")
    if request.categories:
        call.require_scope(KeyScope.CLASSIFY)  # categories are the classify capability
    embedded = await embedder.embed(texts, request.long_note, categories=request.categories)
    await audit_embedding(call, embedded)
    data: list[dict[str, Any]] = [
        {
            "index": i,
            "id": note_in.id,
            "embedding": embedded.vectors[i],
            "tokens": note.tokens,
            "handling": note.handling,
            "windows": len(note.windows),
        }
        for i, (note_in, note) in enumerate(zip(request.notes, embedded.notes, strict=True))
    ]
    if embedded.categories is not None:
        labels = embedded.categories.labels
        for item, row in zip(data, embedded.categories.probabilities, strict=True):
            best = int(row.argmax())
            item["category"] = labels[best]
            item["category_probability"] = float(row[best])
    body = {
        "model": {"name": embedded.manifest.name, "version": embedded.manifest.version},
        "dim": embedded.manifest.embedding_dim,
        "data": data,
        "usage": {"tokens": embedded.tokens},
    }
    return FastJSONResponse(body, headers=model_header(embedded.manifest.ref))
