"""POST /v1/embeddings: OpenAI-compatible, so the official `openai` client works unchanged."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import EngineDep, SettingsDep
from service.api.embed import model_header
from service.api.errors import error_responses
from service.api.responses import FastJSONResponse
from service.api.schemas import OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, validate_texts
from service.api.security import audit_details
from service.errors import BadRequest, NotFound

router = APIRouter(tags=["embeddings"])


@router.post(
    "/v1/embeddings",
    response_model=OpenAIEmbeddingResponse,
    responses=error_responses(400, 404, 409, 413, 422, 503),
)
async def create_embeddings(
    request: OpenAIEmbeddingRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    manifest = engine.manifest
    if request.model not in (manifest.name, manifest.ref):
        raise NotFound(f"model not served here; this service serves {manifest.ref}", param="model")
    if request.dimensions is not None and request.dimensions != manifest.embedding_dim:
        raise BadRequest(
            f"dimensions must be {manifest.embedding_dim} for this model", param="dimensions"
        )
    texts = [request.input] if isinstance(request.input, str) else request.input
    validate_texts(texts, settings, "input")
    result = await engine.embed(texts)
    tokens = sum(n.tokens for n in result.notes)
    audit_details(http, items=len(texts), model=result.manifest.ref, tokens=tokens)
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": (
                base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                if request.encoding_format == "base64"
                else vector
            ),
        }
        for i, vector in enumerate(result.vectors)
    ]
    body = {
        "object": "list",
        "data": data,
        "model": result.manifest.ref,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return FastJSONResponse(body, headers=model_header(result.manifest.ref))
