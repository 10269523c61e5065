"""Typed dependencies: the lifespan builds one `ApiState`; routes receive its parts through
these `Annotated` aliases and never read `request.state` themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.api.quotas import QuotaLimiter
from service.errors import NotReady
from service.metrics import ServiceMetrics
from service.orchestration.catalogue import ModelCatalogue
from service.orchestration.embedding import Embedder
from service.orchestration.notes import NoteService
from service.orchestration.resources import Resources
from service.orchestration.serving import ModelSwitcher
from service.settings import Settings

# The lifespan state's one key (Starlette copies it into every request's state).
API_STATE = "api"


@dataclass(frozen=True)
class ApiState:
    """What the lifespan yields: the running service, and what the API layer itself keeps."""

    resources: Resources
    quotas: QuotaLimiter


def api_state(request: Request) -> ApiState:
    state: ApiState | None = getattr(request.state, API_STATE, None)
    if state is None:
        raise NotReady("model is not loaded yet", retry_after_s=1)
    return state


StateDep = Annotated[ApiState, Depends(api_state)]


def _settings(state: StateDep) -> Settings:
    return state.resources.settings


def _metrics(state: StateDep) -> ServiceMetrics:
    return state.resources.metrics


def _embedder(state: StateDep) -> Embedder:
    return state.resources.embedder


def _notes(state: StateDep) -> NoteService:
    return state.resources.notes


def _switcher(state: StateDep) -> ModelSwitcher:
    return state.resources.switcher


def _catalogue(state: StateDep) -> ModelCatalogue:
    return state.resources.catalogue


SettingsDep = Annotated[Settings, Depends(_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
EmbedderDep = Annotated[Embedder, Depends(_embedder)]
NotesDep = Annotated[NoteService, Depends(_notes)]
SwitcherDep = Annotated[ModelSwitcher, Depends(_switcher)]
CatalogueDep = Annotated[ModelCatalogue, Depends(_catalogue)]
