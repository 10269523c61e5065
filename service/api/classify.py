"""POST /classify: notes in, note category and probabilities out, from the bundle's head."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import EngineDep, SettingsDep
from service.api.embed import EMBED_ERRORS, embed_notes, model_header
from service.api.responses import FastJSONResponse
from service.api.schemas import ClassifyRequest, ClassifyResponse, validate_texts
from service.inference.head import require_head

router = APIRouter(tags=["classification"])


@router.post("/classify", response_model=ClassifyResponse, responses=EMBED_ERRORS)
async def classify(
    request: ClassifyRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    validate_texts([n.text for n in request.notes], settings, "notes")
    runtime = engine.runtime  # pin one version: the head must match the encoder that embeds
    head = require_head(runtime.head, runtime.manifest.ref)
    result, ids = await embed_notes(http, engine, request, runtime)
    probs = head.probabilities(result.vectors)  # [N, C]
    top_k = request.top_k or len(head.labels)
    data = []
    for i, note in enumerate(result.notes):
        order = probs[i].argsort()[::-1][:top_k]
        data.append(
            {
                "index": i,
                "id": ids[i],
                "category": head.labels[order[0]],
                "probability": float(probs[i, order[0]]),
                "probabilities": [
                    {"category": head.labels[j], "probability": float(probs[i, j])} for j in order
                ],
                "tokens": note.tokens,
                "handling": note.handling,
            }
        )
    body = {
        "model": {"name": result.manifest.name, "version": result.manifest.version},
        "labels": list(head.labels),
        "data": data,
        "usage": {"tokens": sum(n.tokens for n in result.notes)},
    }
    return FastJSONResponse(body, headers=model_header(result.manifest.ref))
