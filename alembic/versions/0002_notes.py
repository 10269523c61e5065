"""notes, note_vectors and the index sequence: the note store behind search

Revision ID: 0002_notes
Revises: 0001_model_versions
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_notes"
down_revision: str | None = "0001_model_versions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", ROW_ID, primary_key=True),
        sa.Column("note_key", sa.String(256), nullable=False, unique=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("text_sha256", sa.String(64), nullable=False),
        sa.Column("category", sa.String(128), nullable=True),
        sa.Column("note_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("metadata", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_notes_category", "notes", ["category"])
    op.create_index("ix_notes_note_time", "notes", ["note_time"])
    op.create_index("ix_notes_source", "notes", ["source"])
    op.create_table(
        "note_vectors",
        sa.Column(
            "note_id",
            ROW_ID,
            sa.ForeignKey("notes.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "model_version_id",
            sa.Integer(),
            sa.ForeignKey("model_versions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=True),
        sa.Column("text_sha256", sa.String(64), nullable=False),
    )
    op.create_index(
        "ix_note_vectors_model_seq", "note_vectors", ["model_version_id", "seq"], unique=True
    )
    counter = op.create_table(
        "index_sequence",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("index_sequence")
    op.drop_index("ix_note_vectors_model_seq", table_name="note_vectors")
    op.drop_table("note_vectors")
    op.drop_index("ix_notes_source", table_name="notes")
    op.drop_index("ix_notes_note_time", table_name="notes")
    op.drop_index("ix_notes_category", table_name="notes")
    op.drop_table("notes")
