"""quota_state: per-key quota state shared by every replica (one row per key and kind)

Each row holds the key's "theoretical arrival time" (GCRA, the token bucket written as one
timestamp), so a request is admitted or refused by one atomic upsert and replicas on the same
database share one budget. Created on SQLite too (the schema stays the same everywhere); the
service counts there in process unless told otherwise.

Revision ID: 0006_quota_state
Revises: 0005_promotion_checks
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_quota_state"
down_revision: str | None = "0005_promotion_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_state",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("tat_s", sa.Double(), nullable=False),
        sa.CheckConstraint("kind IN ('requests', 'tokens')", name="ck_quota_state_kind"),
    )


def downgrade() -> None:
    op.drop_table("quota_state")
