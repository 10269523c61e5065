"""Typed dependencies: the lifespan builds resources, routes receive them through these aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import NotReady
from service.inference.engine import EmbeddingEngine
from service.metrics import ServiceMetrics
from service.registry.models import ModelRegistry
from service.serving import ModelSwitcher
from service.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def get_metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.state.metrics
    return metrics


def get_engine(request: Request) -> EmbeddingEngine:
    engine: EmbeddingEngine | None = getattr(request.state, "engine", None)
    if engine is None:
        raise NotReady("model is not loaded yet", retry_after_s=1)
    return engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
EngineDep = Annotated[EmbeddingEngine, Depends(get_engine)]


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.state.registry
    return registry


def get_switcher(request: Request) -> ModelSwitcher:
    switcher: ModelSwitcher = request.state.switcher
    return switcher


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
SwitcherDep = Annotated[ModelSwitcher, Depends(get_switcher)]
