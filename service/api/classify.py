"""POST /classify: notes in, note category and probabilities out, from the bundle's head."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from service.api.deps import EngineDep, SettingsDep
from service.api.embed import model_header
from service.api.responses import FastJSONResponse
from service.api.schemas import ClassifyRequest, ClassifyResponse, ErrorResponse, validate_texts
from service.api.security import audit_details
from service.inference.head import require_head

router = APIRouter(tags=["classification"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse} for status in (400, 409, 413, 422, 503)
}


@router.post("/classify", response_model=ClassifyResponse, responses=ERRORS)
async def classify(
    request: ClassifyRequest, http: Request, engine: EngineDep, settings: SettingsDep
) -> Response:
    texts = [n.text for n in request.notes]
    ids = [n.id for n in request.notes]
    validate_texts(texts, settings, "notes")
    runtime = engine.runtime  # pin one version: the head must match the encoder that embeds
    head = require_head(runtime.head, runtime.manifest.ref)
    result = await engine.embed(texts, request.long_note, runtime=runtime)
    audit_details(
        http,
        items=len(texts),
        model=result.manifest.ref,
        tokens=sum(n.tokens for n in result.notes),
    )
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
