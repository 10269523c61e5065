"""The model registry: register bundles, list them, promote one version per name, retire."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.bundle import MANIFEST, Bundle
from service.errors import NotespaceError, NotFound
from service.registry.database import session_factory
from service.registry.tables import ModelStatus, ModelVersion, utcnow


class ModelConflict(NotespaceError):
    status = 409
    code = "conflict"
    type = "invalid_request_error"


def bundle_digest(bundle: Bundle) -> str:
    """sha256 of manifest.json: it lists the sha256 of every other file, so it pins them all."""
    return hashlib.sha256((bundle.path / MANIFEST).read_bytes()).hexdigest()


class ModelRegistry:
    def __init__(self, engine: Engine) -> None:
        self._read = session_factory(engine)
        self._write = session_factory(engine, writer=True)

    def register(self, bundle: Bundle, registered_by: str) -> ModelVersion:
        """Add a verified bundle as `staged`; registering the same bundle again is a no-op."""
        m = bundle.manifest
        digest = bundle_digest(bundle)
        with self._write.begin() as session:
            existing = session.scalar(
                select(ModelVersion).where(
                    ModelVersion.name == m.name, ModelVersion.version == m.version
                )
            )
            if existing is not None:
                if existing.bundle_sha256 != digest:
                    raise ModelConflict(
                        f"{m.ref} is already registered with a different bundle "
                        f"(sha256 {existing.bundle_sha256[:12]}…); give the new one a new version"
                    )
                return existing
            row = ModelVersion(
                name=m.name,
                version=m.version,
                status=ModelStatus.STAGED.value,
                objective=m.objective,
                base_model=m.base_model,
                embedding_dim=m.embedding_dim,
                max_tokens=m.max_tokens,
                precision=m.precision,
                bundle_path=str(bundle.path.resolve()),
                bundle_sha256=digest,
                training_config=m.training_config,
                data_fingerprint=m.data_fingerprint,
                eval_metrics=m.eval_metrics,
                registered_by=registered_by,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                raise ModelConflict(f"{m.ref} was registered concurrently; retry") from None
            return row

    def list(self, name: str | None = None) -> Sequence[ModelVersion]:
        query = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)
        if name is not None:
            query = query.where(ModelVersion.name == name)
        with self._read() as session:
            return session.scalars(query).all()

    def get(self, ref: str) -> ModelVersion:
        """A version by numeric id or by `name@version`."""
        with self._read() as session:
            return _find(session, ref)

    def active(self, name: str | None = None) -> ModelVersion | None:
        """The active version of `name`; without a name, the only active model (if one)."""
        query = select(ModelVersion).where(ModelVersion.status == ModelStatus.ACTIVE.value)
        if name is not None:
            query = query.where(ModelVersion.name == name)
        with self._read() as session:
            rows = session.scalars(query).all()
        if len(rows) > 1:
            names = ", ".join(sorted(r.name for r in rows))
            raise ModelConflict(
                f"several models are active ({names}); set NOTESPACE_MODEL_NAME to choose one"
            )
        return rows[0] if rows else None

    def promote(self, ref: str) -> ModelVersion:
        """Make `ref` the active version of its name; the previous active one goes back to
        staged (so it can be promoted again to roll back)."""
        try:
            with self._write.begin() as session:
                target = _find(session, ref)
                if target.status == ModelStatus.RETIRED.value:
                    raise ModelConflict(f"{target.ref} is retired and cannot be promoted")
                # Lock every version of this name, so concurrent promotes run one after another.
                session.scalars(
                    select(ModelVersion.id)
                    .where(ModelVersion.name == target.name)
                    .with_for_update()
                ).all()
                session.refresh(target)
                if target.status == ModelStatus.ACTIVE.value:
                    return target
                if target.status == ModelStatus.RETIRED.value:
                    raise ModelConflict(f"{target.ref} is retired and cannot be promoted")
                session.execute(
                    update(ModelVersion)
                    .where(
                        ModelVersion.name == target.name,
                        ModelVersion.status == ModelStatus.ACTIVE.value,
                    )
                    .values(status=ModelStatus.STAGED.value)
                )
                session.flush()
                target.status = ModelStatus.ACTIVE.value
                target.activated_at = utcnow()
                session.flush()
                return target
        except (IntegrityError, OperationalError):
            raise ModelConflict(
                f"another promotion of {ref} ran at the same time; nothing changed, retry"
            ) from None

    def set_eval_metrics(self, ref: str, metrics: dict[str, Any]) -> ModelVersion:
        """Replace a version's evaluation metrics (the bundle itself is not touched)."""
        with self._write.begin() as session:
            target = _find(session, ref)
            target.eval_metrics = metrics
            session.flush()
            return target

    def retire(self, ref: str) -> ModelVersion:
        with self._write.begin() as session:
            target = _find(session, ref)
            if target.status == ModelStatus.ACTIVE.value:
                raise ModelConflict(
                    f"{target.ref} is serving; promote another version before retiring it"
                )
            if target.status != ModelStatus.RETIRED.value:
                target.status = ModelStatus.RETIRED.value
                target.retired_at = utcnow()
            return target


def _find(session: Session, ref: str) -> ModelVersion:
    if ref.isdigit():
        row = session.get(ModelVersion, int(ref))
    elif "@" in ref:
        name, _, version = ref.partition("@")
        row = session.scalar(
            select(ModelVersion).where(ModelVersion.name == name, ModelVersion.version == version)
        )
    else:
        raise NotFound(f"model reference {ref!r} is neither an id nor NAME@VERSION", param="model")
    if row is None:
        raise NotFound(f"no registered model {ref!r}", param="model")
    return row
