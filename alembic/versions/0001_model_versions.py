"""model_versions: the model registry

Revision ID: 0001_model_versions
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_model_versions"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("objective", sa.String(64), nullable=False),
        sa.Column("base_model", sa.String(256), nullable=False),
        sa.Column("embedding_dim", sa.Integer(), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("bundle_path", sa.String(1024), nullable=False),
        sa.Column("bundle_sha256", sa.String(64), nullable=False),
        sa.Column("training_config", JSON, nullable=True),
        sa.Column("data_fingerprint", sa.String(128), nullable=True),
        sa.Column("eval_metrics", JSON, nullable=True),
        sa.Column("registered_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        sa.CheckConstraint(
            "status IN ('staged', 'active', 'retired')", name="ck_model_versions_status"
        ),
    )
    op.create_index(
        "uq_model_versions_one_active",
        "model_versions",
        ["name"],
        unique=True,
        sqlite_where=sa.text("status = 'active'"),
        postgresql_where=sa.text("status = 'active'"),
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_one_active", table_name="model_versions")
    op.drop_table("model_versions")
