"""The model registry: register bundles, list them, promote one version per name, retire."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from service.bundle import MANIFEST, Bundle
from service.errors import Conflict, NotFound
from service.registry.database import session_factory
from service.registry.promotion_events import announce_promotion
from service.registry.promotion_guard import (
    PromotionOutcome,
    PromotionPolicy,
    SuiteComparison,
    compare_suites,
    decide,
)
from service.registry.tables import ModelStatus, ModelVersion, PromotionCheck, utcnow

log = logging.getLogger(__name__)

OVERRIDE_HINT = (
    "; to promote it anyway: `notespace models promote --force-regression` "
    "(HTTP: ?force_regression=true)"
)


@dataclass(frozen=True)
class PromotionRequest:
    """Who asks for a promotion, whether they override the guard, and what else it replaces."""

    requested_by: str
    force_regression: bool = False
    # Compared against when the candidate's name has no active version: the version serving
    # (HTTP) or the single active model (CLI), since that is what the promotion replaces.
    fallback_ref: str | None = None


@dataclass(frozen=True)
class GuardedPromotion:
    """A promotion the guard let through, and the active version it was checked against."""

    check: PromotionCheck
    replaces_id: int | None  # the name's active version at check time (None: there was none)


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
                    raise Conflict(
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
                raise Conflict(f"{m.ref} was registered concurrently; retry") from None
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
            raise Conflict(
                f"several models are active ({names}); set NOTESPACE_MODEL_NAME to choose one"
            )
        return rows[0] if rows else None

    def guard_promotion(
        self, ref: str, policy: PromotionPolicy, request: PromotionRequest
    ) -> GuardedPromotion | None:
        """Compare `ref` with the version its promotion would replace and record the comparison.

        Raises PromotionRefused (after the record is committed) when the guard says no; None
        when `ref` is already active (nothing is replaced, nothing recorded).
        """
        with self._write.begin() as session:
            target = _find(session, ref)
            if target.status == ModelStatus.RETIRED.value:
                raise Conflict(f"{target.ref} is retired and cannot be promoted")
            if target.status == ModelStatus.ACTIVE.value:
                return None
            replaces = session.scalar(
                select(ModelVersion).where(
                    ModelVersion.name == target.name,
                    ModelVersion.status == ModelStatus.ACTIVE.value,
                )
            )
            against = replaces or _find_or_none(session, request.fallback_ref)
            if against is not None and against.id == target.id:
                against = None
            # Every version of this name that was ever active: the guard also compares with
            # the best of them per task, so small drops cannot pile up promotion by promotion.
            ancestors = [
                (row.ref, row.eval_metrics)
                for row in session.scalars(
                    select(ModelVersion).where(
                        ModelVersion.name == target.name,
                        ModelVersion.activated_at.is_not(None),
                        ModelVersion.id != target.id,
                    )
                )
            ]
            comparison = (
                compare_suites(
                    target.ref,
                    target.eval_metrics,
                    against.ref,
                    against.eval_metrics,
                    policy,
                    ancestors,
                )
                if against is not None
                else SuiteComparison("nothing to compare against")
            )
            decision = decide(
                comparison,
                candidate_ref=target.ref,
                against_ref=against.ref if against is not None else None,
                policy=policy,
                force=request.force_regression,
            )
            check = PromotionCheck(
                requested_by=request.requested_by[:256],
                candidate_id=target.id,
                candidate_ref=target.ref,
                against_id=against.id if against is not None else None,
                against_ref=against.ref if against is not None else None,
                outcome=decision.outcome.value,
                reason=decision.reason,
                suite_name=(comparison.suite_name or "")[:128] or None,
                suite_fingerprint=(comparison.suite_fingerprint or "")[:128] or None,
                margin=policy.margin,
                tasks=comparison.tasks_record(),
            )
            session.add(check)
            session.flush()
        level = logging.WARNING if decision.outcome is PromotionOutcome.FORCED else logging.INFO
        log.log(level, "promotion check %d of %s: %s", check.id, check.candidate_ref, check.outcome)
        if decision.refusal is not None:
            raise decision.refusal(f"promotion refused: {decision.reason}{OVERRIDE_HINT}")
        return GuardedPromotion(check, replaces.id if replaces is not None else None)

    def latest_checks(self, version_ids: Iterable[int] | None = None) -> dict[int, PromotionCheck]:
        """Each version's latest promotion check (as candidate), by version id."""
        latest = select(func.max(PromotionCheck.id)).group_by(PromotionCheck.candidate_id)
        if version_ids is not None:
            latest = latest.where(PromotionCheck.candidate_id.in_(list(version_ids)))
        query = select(PromotionCheck).where(PromotionCheck.id.in_(latest.scalar_subquery()))
        with self._read() as session:
            return {row.candidate_id: row for row in session.scalars(query)}

    def latest_check(self, version_id: int) -> PromotionCheck | None:
        return self.latest_checks([version_id]).get(version_id)

    def promote(self, ref: str, *, guarded: GuardedPromotion | None = None) -> ModelVersion:
        """Make `ref` the active version of its name; the previous active one goes back to
        staged (so it can be promoted again to roll back).

        With `guarded` (from guard_promotion) the promotion goes ahead only if the name's active
        version is still the one the guard compared against. Without it this is the bare
        registry operation (the first model of an empty registry); the CLI and HTTP paths
        always pass the guard.
        """
        try:
            with self._write.begin() as session:
                target = _find(session, ref)
                if target.status == ModelStatus.RETIRED.value:
                    raise Conflict(f"{target.ref} is retired and cannot be promoted")
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
                    raise Conflict(f"{target.ref} is retired and cannot be promoted")
                if guarded is not None:
                    _still_replaces(session, target, guarded)
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
                announce_promotion(session, target.name)  # sent to every replica on commit
                return target
        except (IntegrityError, OperationalError):
            raise Conflict(
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
                raise Conflict(
                    f"{target.ref} is serving; promote another version before retiring it"
                )
            if target.status != ModelStatus.RETIRED.value:
                target.status = ModelStatus.RETIRED.value
                target.retired_at = utcnow()
            return target


def _still_replaces(session: Session, target: ModelVersion, guarded: GuardedPromotion) -> None:
    """Refuse when another promotion changed the active version since the guard's check."""
    active = session.scalar(
        select(ModelVersion).where(
            ModelVersion.name == target.name, ModelVersion.status == ModelStatus.ACTIVE.value
        )
    )
    if (active.id if active is not None else None) != guarded.replaces_id:
        now = active.ref if active is not None else "no version"
        raise Conflict(
            f"{now} became active while {target.ref} was being checked; nothing changed, retry"
        )


def _find_or_none(session: Session, ref: str | None) -> ModelVersion | None:
    if ref is None:
        return None
    try:
        return _find(session, ref)
    except NotFound:
        return None


def _find(session: Session, ref: str) -> ModelVersion:
    if ref.isascii() and ref.isdigit():  # str.isdigit alone also takes '²' and '٣'
        # Ids are 64-bit: a larger number names no row (and would overflow the driver).
        number = int(ref)
        row = session.get(ModelVersion, number) if number < 2**63 else None
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
