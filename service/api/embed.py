"""POST /embed: clinical notes in, one unit vector per note out."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import EngineDep, SettingsDep
from service.api.errors import error_responses
from service.api.responses import FastJSONResponse
from service.api.schemas import (
    ClassifyRequest,
    EmbedRequest,
    EmbedResponse,
    validate_texts,
)
from service.api.security import audit_details, require_scope
from service.inference.engine import EmbeddingEngine, EmbedResult, ModelRuntime
from service.inference.head import require_head
from service.security import KeyScope

router = APIRouter(tags=["embeddings"])

EMBED_ERRORS = error_responses(400, 409, 413, 422, 503)


async def embed_notes(
    http: Request,
    engine: EmbeddingEngine,
    request: EmbedRequest | ClassifyRequest,
    runtime: ModelRuntime,
) -> tuple[EmbedResult, list[str | None]]:
    """Embed validated notes with the pinned model; record the audit details (counts, model)."""
    texts = [n.text for n in request.notes]
    result = await engine.embed(texts, request.long_note, runtime=runtime)
    audit_details(
        http,
        items=len(texts),
        model=result.manifest.ref,
        tokens=sum(n.tokens for n in result.notes),
    )
    return result, [n.id for n in request.notes]


@router.post("/embed", response_model=EmbedResponse, responses=EMBED_ERRORS)
async def embed(
    request: EmbedRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    validate_texts([n.text for n in request.notes], settings, "notes")
    if request.categories:
        require_scope(http, KeyScope.CLASSIFY)  # categories are the classify capability
    runtime = engine.runtime  # pin one version: the head must match the encoder that embeds
    head = require_head(runtime.head, runtime.manifest.ref) if request.categories else None
    result, ids = await embed_notes(http, engine, request, runtime)
    data = [
        {
            "index": i,
            "id": ids[i],
            "embedding": result.vectors[i],
            "tokens": note.tokens,
            "handling": note.handling,
            "windows": len(note.windows),
        }
        for i, note in enumerate(result.notes)
    ]
    if head is not None:
        probs = head.probabilities(result.vectors)  # [N, C]
        for item, row in zip(data, probs, strict=True):
            best = int(row.argmax())
            item["category"] = head.labels[best]
            item["category_probability"] = float(row[best])
    body = {
        "model": {"name": result.manifest.name, "version": result.manifest.version},
        "dim": result.manifest.embedding_dim,
        "data": data,
        "usage": {"tokens": sum(n.tokens for n in result.notes)},
    }
    return FastJSONResponse(body, headers=model_header(result.manifest.ref))


def model_header(ref: str) -> dict[str, str]:
    return {"X-Notespace-Model": ref}
