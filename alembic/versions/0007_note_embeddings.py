"""note_embeddings: the pgvector store's table (NOTESPACE_VECTOR_STORE=pgvector)

Created on PostgreSQL whenever the server offers the `vector` extension, whichever store the
service uses now, so switching to pgvector later needs no schema step; skipped (and SQLite
untouched) where the extension is not available: FAISS needs nothing from it, and a service
configured for pgvector refuses to start there with "pgvector extension not installed in this
database". A server that gains the extension later is completed by `notespace db upgrade` or
the service's start (service.registry.pgvector_store.PARENT_DDL, the same statement).

One parent, LIST partitioned by model version; the service creates each version's partition and
its HNSW index when it opens or rebuilds that version. The parent's `halfvec` column has no
dimension (versions may differ): each partition checks its own.

Revision ID: 0007_note_embeddings
Revises: 0006_quota_state
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_note_embeddings"
down_revision: str | None = "0006_quota_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _vector_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    found = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).first()
    return found is not None


def upgrade() -> None:
    if not _vector_available():
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS note_embeddings (
            model_version_id integer NOT NULL REFERENCES model_versions (id) ON DELETE CASCADE,
            note_id bigint NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
            embedding halfvec NOT NULL,
            PRIMARY KEY (model_version_id, note_id)
        ) PARTITION BY LIST (model_version_id)
        """
    )


def downgrade() -> None:
    # The extension stays: other tables of the database may use it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS note_embeddings")
