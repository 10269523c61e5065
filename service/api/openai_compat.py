"""POST /v1/embeddings: OpenAI-compatible, so the official `openai` client works unchanged."""

from __future__ import annotations

import base64

from fastapi import APIRouter
from starlette.responses import Response

from service.api.access import CallDep
from service.api.deps import EmbedderDep, SettingsDep
from service.api.embed import audit_embedding, model_header
from service.api.errors import error_responses
from service.api.responses import FastJSONResponse
from service.api.schemas import OpenAIEmbeddingRequest, OpenAIEmbeddingResponse, validate_texts
from service.errors import BadRequest, NotFound

router = APIRouter(tags=["embeddings"])


@router.post(
    "/v1/embeddings",
    response_model=OpenAIEmbeddingResponse,
    responses=error_responses(400, 404, 409, 413, 422, 503),
)
async def create_embeddings(
    request: OpenAIEmbeddingRequest, call: CallDep, embedder: EmbedderDep, settings: SettingsDep
) -> Response:
    manifest = embedder.manifest
    if request.model not in (manifest.name, manifest.ref):
        raise NotFound(f"model not served here; this service serves {manifest.ref}", param="model")
    if request.dimensions is not None and request.dimensions != manifest.embedding_dim:
        raise BadRequest(
            f"dimensions must be {manifest.embedding_dim} for this model", param="dimensions"
        )
    texts = [request.input] if isinstance(request.input, str) else request.input
    validate_texts(texts, settings, "input")
    embedded = await embedder.embed(texts)
    audit_embedding(call, embedded)
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
        for i, vector in enumerate(embedded.vectors)
    ]
    body = {
        "object": "list",
        "data": data,
        "model": embedded.manifest.ref,
        "usage": {"prompt_tokens": embedded.tokens, "total_tokens": embedded.tokens},
    }
    return FastJSONResponse(body, headers=model_header(embedded.manifest.ref))
