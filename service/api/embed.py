"""POST /embed: clinical notes in, one unit vector per note out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.deps import EngineDep, SettingsDep
from service.api.responses import FastJSONResponse
from service.api.schemas import EmbedRequest, EmbedResponse, ErrorResponse, validate_texts

router = APIRouter(tags=["embeddings"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 413, 422, 503)
}


@router.post("/embed", response_model=EmbedResponse, responses=ERRORS)
async def embed(request: EmbedRequest, engine: EngineDep, settings: SettingsDep) -> Response:
    texts = [n.text for n in request.notes]
    ids = [n.id for n in request.notes]
    validate_texts(texts, settings, "notes")
    result = await engine.embed(texts, request.long_note)
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
    body = {
        "model": {"name": result.manifest.name, "version": result.manifest.version},
        "dim": result.manifest.embedding_dim,
        "data": data,
        "usage": {"tokens": sum(n.tokens for n in result.notes)},
    }
    return FastJSONResponse(body, headers=model_header(result.manifest.ref))


def model_header(ref: str) -> dict[str, str]:
    return {"X-Notespace-Model": ref}
