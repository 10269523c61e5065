"""The registry repository on SQLite and PostgreSQL: lifecycle, constraints, concurrency."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from service.bundle import load_bundle, write_manifest
from service.errors import Conflict, NotFound
from service.registry.database import make_engine
from service.registry.models import ModelRegistry
from service.registry.tables import ModelVersion


@pytest.fixture()
def registry(database_url: str) -> ModelRegistry:
    return ModelRegistry(make_engine(database_url))


def statuses(registry: ModelRegistry) -> dict[str, str]:
    return {r.ref: r.status for r in registry.list()}


def test_register_promote_retire_lifecycle(
    registry: ModelRegistry, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    v1 = registry.register(load_bundle(tiny_bundle), "alice")
    assert (v1.ref, v1.status, v1.registered_by, v1.embedding_dim) == (
        "tiny@1",
        "staged",
        "alice",
        32,
    )
    assert len(v1.bundle_sha256) == 64 and Path(v1.bundle_path).is_absolute()
    assert registry.register(load_bundle(tiny_bundle), "bob").id == v1.id  # idempotent
    registry.register(load_bundle(tiny_bundle_v2), "alice")
    assert registry.active("tiny") is None

    registry.promote("tiny@1")
    assert statuses(registry) == {"tiny@1": "active", "tiny@2": "staged"}
    promoted = registry.promote(str(registry.get("tiny@2").id))
    assert promoted.activated_at is not None
    assert statuses(registry) == {"tiny@1": "staged", "tiny@2": "active"}
    assert registry.active().ref == "tiny@2"  # type: ignore[union-attr]

    with pytest.raises(Conflict, match="is serving"):
        registry.retire("tiny@2")
    assert registry.retire("tiny@1").status == "retired"
    with pytest.raises(Conflict, match="retired"):
        registry.promote("tiny@1")
    assert statuses(registry) == {"tiny@1": "retired", "tiny@2": "active"}


def test_unknown_versions(registry: ModelRegistry) -> None:
    for ref in ("tiny@9", "404", "no-at-sign"):
        with pytest.raises(NotFound):
            registry.promote(ref)
        with pytest.raises(NotFound):
            registry.get(ref)


def test_same_name_version_different_bundle_is_refused(
    registry: ModelRegistry, tiny_bundle: Path, tmp_path: Path
) -> None:
    registry.register(load_bundle(tiny_bundle), "alice")
    other = Path(shutil.copytree(tiny_bundle, tmp_path / "other"))
    manifest = load_bundle(other).manifest
    write_manifest(other, **manifest.model_dump(exclude={"files", "objective"}), objective="mlm")
    with pytest.raises(Conflict, match="different bundle"):
        registry.register(load_bundle(other), "alice")


def test_database_enforces_one_active_per_name(
    registry: ModelRegistry, database_url: str, tiny_bundle: Path
) -> None:
    row = registry.register(load_bundle(tiny_bundle), "alice")
    registry.promote(row.ref)
    engine = make_engine(database_url)
    values = {
        c.name: getattr(row, c.name) for c in ModelVersion.__table__.columns if c.name != "id"
    }
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            insert(ModelVersion).values({**values, "version": "other", "status": "active"})
        )
    with engine.connect() as conn:
        assert conn.execute(select(ModelVersion.id)).all() == [(row.id,)]
    engine.dispose()


def test_concurrent_promotes_leave_exactly_one_active(
    registry: ModelRegistry, tiny_bundle: Path, tiny_bundle_v2: Path
) -> None:
    registry.register(load_bundle(tiny_bundle), "alice")
    registry.register(load_bundle(tiny_bundle_v2), "alice")
    errors: list[BaseException] = []

    def promote_many(ref: str) -> None:
        for _ in range(15):
            try:
                registry.promote(ref)
            except Conflict:
                pass  # a clear, retryable refusal is allowed; corruption is not
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=promote_many, args=(r,)) for r in ("tiny@1", "tiny@2") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(statuses(registry).values()) == ["active", "staged"]
