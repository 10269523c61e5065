"""promotion_checks: the promotion guard's comparisons (who, when, against what, outcome, why)

A table rather than a column on model_versions: a version is checked again at each attempt
(refused, then forced; or compared with another active version later), and that history is the
record governance asks for. `GET /models` shows each version's latest row.

Revision ID: 0005_promotion_checks
Revises: 0004_audit_log
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005_promotion_checks"
down_revision: str | None = "0004_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "promotion_checks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(256), nullable=False),
        sa.Column(
            "candidate_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("candidate_ref", sa.String(200), nullable=False),
        sa.Column(
            "against_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("against_ref", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("suite_name", sa.String(128), nullable=True),
        sa.Column("suite_fingerprint", sa.String(128), nullable=True),
        sa.Column("margin", sa.Double(), nullable=False),
        sa.Column("tasks", JSON, nullable=True),
        sa.CheckConstraint(
            "outcome IN ('passed', 'refused', 'forced', 'not_comparable')",
            name="ck_promotion_checks_outcome",
        ),
    )
    op.create_index("ix_promotion_checks_candidate", "promotion_checks", ["candidate_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_promotion_checks_candidate", table_name="promotion_checks")
    op.drop_table("promotion_checks")
