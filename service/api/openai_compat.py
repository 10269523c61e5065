"""OpenAI-compatible embeddings (POST /v1/embeddings, GET /v1/models), so the official `openai`
client, and tools built on it, work unchanged."""

from __future__ import annotations

import base64

from fastapi import APIRouter
from starlette.responses import Response

from service.api.access import CallDep
from service.api.deps import EmbedderDep, SettingsDep
from service.api.embed import audit_embedding, model_header
from service.api.errors import error_responses
from service.api.responses import FastJSONResponse
from service.api.schemas import (
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIModel,
    OpenAIModelList,
    validate_texts,
)
from service.errors import NotFound, TokenIdsUnsupported

router = APIRouter(prefix="/v1", tags=["openai"])


def _models(embedder: EmbedderDep) -> list[OpenAIModel]:
    created = int(embedder.manifest.created_at.timestamp())
    return [OpenAIModel(id=name, created=created) for name in embedder.model_names()]


@router.get("/models", response_model=OpenAIModelList, responses=error_responses(503))
async def list_models(embedder: EmbedderDep) -> OpenAIModelList:
    """The served model under each name /v1/embeddings accepts (name, NAME@VERSION, aliases)."""
    return OpenAIModelList(data=_models(embedder))


@router.get("/models/{model}", response_model=OpenAIModel, responses=error_responses(404, 503))
async def retrieve_model(model: str, embedder: EmbedderDep) -> OpenAIModel:
    found = next((m for m in _models(embedder) if m.id == model), None)
    if found is None:
        raise NotFound(f"no model {model!r} is served here", param="model")
    return found


@router.post(
    "/embeddings",
    response_model=OpenAIEmbeddingResponse,
    responses=error_responses(400, 404, 409, 413, 422, 503),
)
async def create_embeddings(
    request: OpenAIEmbeddingRequest, call: CallDep, embedder: EmbedderDep, settings: SettingsDep
) -> Response:
    embedder.require_model(request.model)
    embedder.require_dimensions(request.dimensions)
    texts = _texts(request.input)
    validate_texts(texts, settings, "input")
    embedded = await embedder.embed(texts)
    await audit_embedding(call, embedded)
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


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if any(not isinstance(item, str) for item in value):
        raise TokenIdsUnsupported(
            "input holds token ids; this service embeds text with its own tokenizer, so send "
            "the text itself (with LangChain's OpenAIEmbeddings: check_embedding_ctx_length="
            "False)",
            param="input",
        )
    return [item for item in value if isinstance(item, str)]
