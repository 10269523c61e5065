"""POST /classify: notes in, note category and probabilities out, from the bundle's head."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.api.access import CallDep
from service.api.deps import EmbedderDep, SettingsDep
from service.api.embed import EMBED_ERRORS, audit_embedding, model_header
from service.api.responses import FastJSONResponse
from service.api.schemas import ClassifyRequest, ClassifyResponse, validate_texts

router = APIRouter(tags=["classification"])


@router.post("/classify", response_model=ClassifyResponse, responses=EMBED_ERRORS)
async def classify(
    request: ClassifyRequest, call: CallDep, embedder: EmbedderDep, settings: SettingsDep
) -> Response:
    texts = [n.text for n in request.notes]
    validate_texts(texts, settings, "notes")
    embedded = await embedder.embed(texts, request.long_note, categories=True)
    await audit_embedding(call, embedded)
    assert embedded.categories is not None
    labels, probs = embedded.categories.labels, embedded.categories.probabilities  # [N, C]
    top_k = request.top_k or len(labels)
    data = []
    for i, note in enumerate(embedded.notes):
        order = probs[i].argsort()[::-1][:top_k]
        data.append(
            {
                "index": i,
                "id": request.notes[i].id,
                "category": labels[order[0]],
                "probability": float(probs[i, order[0]]),
                "probabilities": [
                    {"category": labels[j], "probability": float(probs[i, j])} for j in order
                ],
                "tokens": note.tokens,
                "handling": note.handling,
            }
        )
    body = {
        "model": {"name": embedded.manifest.name, "version": embedded.manifest.version},
        "labels": list(labels),
        "data": data,
        "usage": {"tokens": embedded.tokens},
    }
    return FastJSONResponse(body, headers=model_header(embedded.manifest.ref))
