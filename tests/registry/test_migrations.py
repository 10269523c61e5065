"""Migrations on SQLite and PostgreSQL: upgrade from empty, downgrade, no model/migration drift."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from service.registry.database import (
    SchemaError,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
)
from service.registry.tables import Base


def test_upgrade_from_empty_then_downgrade_and_again(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    with pytest.raises(SchemaError, match="no notespace schema"):
        check_schema(engine)
    upgrade(empty_database_url)
    assert current_revision(engine) == head_revision()
    check_schema(engine)
    assert "model_versions" in inspect(engine).get_table_names()
    downgrade(empty_database_url, "base")
    assert "model_versions" not in inspect(engine).get_table_names()
    upgrade(empty_database_url)
    check_schema(engine)
    engine.dispose()


def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_newer_schema_than_code_is_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with pytest.raises(SchemaError, match="newer than this code"):
        check_schema(engine)
    engine.dispose()


def test_promotion_checks_migration_goes_down_and_up_alone(database_url: str) -> None:
    engine = make_engine(database_url)
    downgrade(database_url, "0004_audit_log")
    tables = set(inspect(engine).get_table_names())
    assert "promotion_checks" not in tables and {"model_versions", "audit_log"} <= tables
    upgrade(database_url)
    assert "promotion_checks" in inspect(engine).get_table_names()
    check_schema(engine)
    engine.dispose()
