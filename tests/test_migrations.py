"""The Alembic migration creates exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from consultant.db import Base, make_engine, upgrade
from consultant.models import import_all_models


def test_migration_matches_models(db_url):
    upgrade(db_url)
    upgrade(db_url)  # idempotent
    import_all_models()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
