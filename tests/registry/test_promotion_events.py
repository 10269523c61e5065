"""Promotion announcements: NOTIFY on commit reaches every listener; a rolled-back promotion
announces nothing."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service.bundle import load_bundle
from service.errors import NotFound
from service.registry.database import make_engine, upgrade
from service.registry.models import ModelRegistry
from service.registry.promotion_events import PromotionListener
from tests.conftest import registry_with_versions, scratch_postgres_database

pytestmark = pytest.mark.postgres


def _listening(engine: Engine, heard: queue.Queue[str]) -> PromotionListener:
    listener = PromotionListener(engine, heard.put)
    listener.start()
    assert listener.wait_listening(10)
    return listener


def test_every_listener_hears_a_committed_promotion(
    tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    with scratch_postgres_database() as url:
        upgrade(url)
        registry = registry_with_versions(url, tiny_bundle, tiny_bundle_v2)
        engines = [make_engine(url) for _ in range(2)]
        heard: list[queue.Queue[str]] = [queue.Queue(), queue.Queue()]
        listeners = [_listening(e, q) for e, q in zip(engines, heard, strict=True)]
        try:
            with pytest.raises(NotFound):
                registry.promote("tiny@9")  # nothing committed, nothing announced
            registry.promote("tiny@2")
            assert [q.get(timeout=5) for q in heard] == ["tiny", "tiny"]
            assert all(q.empty() for q in heard)
            registry.promote("tiny@2")  # already active: no change, no announcement
            registry.promote("tiny@1")
            assert [q.get(timeout=5) for q in heard] == ["tiny", "tiny"]
        finally:
            for listener in listeners:
                listener.stop()
            for engine in engines:
                engine.dispose()


def test_the_listener_refuses_sqlite() -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        PromotionListener(make_engine("sqlite://"), print)


def test_registering_alone_announces_nothing(tiny_bundle: Path) -> None:
    with scratch_postgres_database() as url:
        upgrade(url)
        engine = make_engine(url)
        heard: queue.Queue[str] = queue.Queue()
        listener = _listening(engine, heard)
        try:
            ModelRegistry(engine).register(load_bundle(tiny_bundle), "t")
            with pytest.raises(queue.Empty):
                heard.get(timeout=1)
        finally:
            listener.stop()
            engine.dispose()
