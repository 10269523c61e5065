"""SQLAlchemy 2.0 typed tables. Each later table (notes, API keys, audit) gets its own migration."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on PostgreSQL (indexable, compact), plain JSON elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: DateTime(timezone=True),
        dict[str, Any]: JsonType,
    }


class ModelStatus(StrEnum):
    STAGED = "staged"
    ACTIVE = "active"
    RETIRED = "retired"


class ModelVersion(Base):
    """One registered bundle. At most one `active` row per model name (a partial unique index)."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        CheckConstraint(
            "status IN ('staged', 'active', 'retired')", name="ck_model_versions_status"
        ),
        Index(
            "uq_model_versions_one_active",
            "name",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.STAGED.value)
    objective: Mapped[str] = mapped_column(String(64))
    base_model: Mapped[str] = mapped_column(String(256))
    embedding_dim: Mapped[int]
    max_tokens: Mapped[int]
    precision: Mapped[str] = mapped_column(String(16))
    bundle_path: Mapped[str] = mapped_column(String(1024))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    training_config: Mapped[dict[str, Any] | None]
    data_fingerprint: Mapped[str | None] = mapped_column(String(128))
    eval_metrics: Mapped[dict[str, Any] | None]
    registered_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


class Note(Base):
    """One clinical note, keyed by the client's note id. `id` is the vector-index row key.

    A deleted note keeps its row (text and metadata cleared) so its id is never reused.
    """

    __tablename__ = "notes"
    __table_args__ = (
        Index("ix_notes_category", "category"),
        Index("ix_notes_note_time", "note_time"),
        Index("ix_notes_source", "source"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    note_key: Mapped[str] = mapped_column(String(256), unique=True)
    text: Mapped[str | None] = mapped_column(Text)  # None when text storage is off, or deleted
    text_sha256: Mapped[str] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(128))
    note_time: Mapped[datetime | None]
    source: Mapped[str | None] = mapped_column(String(128))
    extra: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class NoteVector(Base):
    """A note's vector under one model version. `seq` orders every change for index replay;
    a deletion leaves a tombstone (vector NULL) with its own `seq`."""

    __tablename__ = "note_vectors"
    __table_args__ = (Index("ix_note_vectors_model_seq", "model_version_id", "seq", unique=True),)

    note_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("notes.id", ondelete="CASCADE"),
        primary_key=True,
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    vector: Mapped[bytes | None] = mapped_column(LargeBinary)
    text_sha256: Mapped[str] = mapped_column(String(64))


class IndexSequence(Base):
    """A single-row counter. Writers bump it inside their transaction, so the row lock orders
    commits and sequence numbers the same way (a plain SEQUENCE would not)."""

    __tablename__ = "index_sequence"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class ApiKey(Base):
    """An API key: only its sha256 is stored; `key_id` is the public part shown in lists."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    key_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[str] = mapped_column(String(256))  # comma-separated, sorted
    requests_per_minute: Mapped[int | None]
    tokens_per_minute: Mapped[int | None]
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """Who did what, how much, with which model: never note text, query text or vectors."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(16))
    key_name: Mapped[str | None] = mapped_column(String(128))
    acting_user: Mapped[str | None] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(64))
    status: Mapped[int]
    item_count: Mapped[int | None]
    model_ref: Mapped[str | None] = mapped_column(String(200))
    note_ids: Mapped[list[str] | None] = mapped_column(JsonType)
    client: Mapped[str | None] = mapped_column(String(64))


class PromotionCheck(Base):
    """One promotion-guard comparison: a candidate version against the version it would
    replace, with per-task values and drops, the outcome and why. Rows are never updated."""

    __tablename__ = "promotion_checks"
    __table_args__ = (
        CheckConstraint(
            "outcome IN ('passed', 'refused', 'forced', 'not_comparable')",
            name="ck_promotion_checks_outcome",
        ),
        Index("ix_promotion_checks_candidate", "candidate_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(256))
    candidate_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    candidate_ref: Mapped[str] = mapped_column(String(200))
    # The version compared against (None: nothing to compare against); refs are kept as they
    # were, so the history reads the same whatever happens to the versions later.
    against_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )
    against_ref: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    suite_name: Mapped[str | None] = mapped_column(String(128))
    suite_fingerprint: Mapped[str | None] = mapped_column(String(128))
    margin: Mapped[float] = mapped_column(Double)
    # task -> {metric, higher_is_better, candidate, against, drop, margin, regressed}, or
    # {compared: false, why} for a task only one side has.
    tasks: Mapped[dict[str, Any] | None]


class QuotaState(Base):
    """A key's shared quota state for one kind (requests, tokens): the GCRA "theoretical
    arrival time" in epoch seconds, on the database's clock. Not a foreign key to api_keys:
    a revoked key's row is harmless and a quota check must not wait on key locks."""

    __tablename__ = "quota_state"
    __table_args__ = (
        CheckConstraint("kind IN ('requests', 'tokens')", name="ck_quota_state_kind"),
    )

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    tat_s: Mapped[float] = mapped_column(Double)
