"""The schema the migrations build is the one the code declares (gateway.store.schema): an
index or column added to one and not the other would only show on a migrated production store."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from harness import BACKENDS, FreshDatabase

from gateway.store.database import Database
from gateway.store.schema import metadata


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrated_schema_is_the_declared_schema(backend, tmp_path):
    fresh = FreshDatabase(backend, tmp_path)
    db = Database(fresh.url, threads=1)
    try:
        asyncio.run(db.migrate())
        with db.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
        assert differences == []
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
