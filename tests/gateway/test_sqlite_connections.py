"""How the embedded SQLite store's connections are set up: write-ahead log (readers and one
writer side by side), foreign keys enforced, and reads through the OS page cache (mmap), which
every connection shares, not a small copy per connection."""

from __future__ import annotations

import asyncio

from gateway.store.database import Database


def test_every_sqlite_connection_uses_wal_foreign_keys_and_memory_mapped_reads(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'zorgbrug.db'}", threads=2)
    try:
        # Two connections at once: each is set up when it opens, not only the first.
        with db.engine.connect() as first, db.engine.connect() as second:
            for conn in (first, second):
                pragma = conn.exec_driver_sql
                assert pragma("PRAGMA journal_mode").scalar_one() == "wal"
                assert pragma("PRAGMA foreign_keys").scalar_one() == 1
                assert pragma("PRAGMA mmap_size").scalar_one() >= 256 * 1024 * 1024
    finally:
        asyncio.run(db.dispose())
