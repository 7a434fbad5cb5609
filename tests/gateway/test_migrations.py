"""The schema the migrations build is the one the code declares (gateway.store.schema): an
index or column added to one and not the other would only show on a migrated production store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from harness import BACKENDS, FreshDatabase

from gateway.store.database import Database
from gateway.store.schema import metadata


def declared_for(dialect: str) -> Callable[..., bool]:
    """What the schema declares for one database: an index declared for another
    (``Index.ddl_if(dialect=…)``) is not compared."""

    def include(item: Any, _name: Any, _kind: str, reflected: bool, _other: Any) -> bool:
        only = None if reflected else getattr(item, "_ddl_if", None)
        if only is None or only.dialect is None:
            return True
        return dialect in ((only.dialect,) if isinstance(only.dialect, str) else only.dialect)

    return include


def test_an_index_declared_for_sqlite_alone_is_left_out_on_postgresql():
    include = declared_for("postgresql")
    facts = metadata.tables["resources"].indexes
    only_sqlite = next(i for i in facts if i.name == "ix_resources_consent_facts")
    assert not include(only_sqlite, only_sqlite.name, "index", False, None)
    assert declared_for("sqlite")(only_sqlite, only_sqlite.name, "index", False, None)


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrated_schema_is_the_declared_schema(backend, tmp_path):
    fresh = FreshDatabase(backend, tmp_path)
    db = Database(fresh.url, threads=1)
    try:
        asyncio.run(db.migrate())
        with db.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": declared_for(conn.dialect.name)}
            )
            differences = compare_metadata(context, metadata)
        assert differences == []
    finally:
        asyncio.run(db.dispose())
        fresh.drop()
