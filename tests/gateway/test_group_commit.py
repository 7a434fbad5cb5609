"""Group commit of SQLite writes (gateway.store.group_commit): writes waiting at the same
moment share a transaction, yet each keeps its own outcome, and none is answered before the
COMMIT that stores it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from gateway.store.database import Database


class Refused(Exception):
    pass


def _store(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'group.db'}")
    db.write_now(
        lambda conn: [
            conn.execute(text(sql))
            for sql in (
                "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL "
                "REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
            )
        ]
    )
    return db


def _rows(db: Database, table: str) -> list[tuple[int, ...]]:
    return db.write_now(
        lambda conn: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table}"))]
    )


def _insert(sql: str, then_raise: bool = False) -> Callable[[Connection], str]:
    def work(conn: Connection) -> str:
        conn.execute(text(sql))
        if then_raise:
            raise Refused(sql)
        return sql

    return work


async def _behind_a_held_write(db: Database, works: list[Callable[[Connection], str]]) -> list:
    """Run ``works`` together (queued while a first write holds the writer, so that they are
    taken into one transaction), then close the store."""
    holding, release = threading.Event(), threading.Event()

    def hold(_conn: Connection) -> str:
        holding.set()
        release.wait(10)
        return "held"

    try:
        first = asyncio.ensure_future(db.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, 10)
        queued = [asyncio.ensure_future(db.write(work)) for work in works]
        await asyncio.sleep(0.05)  # every write is in the queue before the holder lets go
        release.set()
        assert await first == "held"
        return await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await db.dispose()


def test_a_failing_write_is_undone_alone_and_its_caller_gets_its_error(tmp_path):
    db = _store(tmp_path)

    writes = [
        _insert("INSERT INTO parent (id) VALUES (1)"),
        _insert("INSERT INTO parent (id) VALUES (2)", then_raise=True),
        _insert("INSERT INTO parent (id) VALUES (3)"),
    ]
    first, failed, third = asyncio.run(_behind_a_held_write(db, writes))
    assert first == "INSERT INTO parent (id) VALUES (1)"
    assert isinstance(failed, Refused)
    assert third == "INSERT INTO parent (id) VALUES (3)"
    assert sorted(_rows(db, "parent")) == [(1,), (3,)]


def test_writes_waiting_together_share_one_transaction_and_are_answered_after_it(tmp_path):
    db = _store(tmp_path)
    path = tmp_path / "group.db"
    seen: dict[str, object] = {}

    async def scenario() -> None:
        holding, release = threading.Event(), threading.Event()

        def hold(_conn: Connection) -> str:
            holding.set()
            release.wait(10)
            return "held"

        def look(_conn: Connection) -> str:
            # From a connection of its own: what is committed while the batch runs.
            with sqlite3.connect(path) as other:
                seen["committed"] = other.execute("SELECT count(*) FROM parent").fetchone()[0]
            seen["first answered"] = first.done()
            return "looked"

        held = asyncio.ensure_future(db.write(hold))
        await asyncio.get_running_loop().run_in_executor(None, holding.wait, 10)
        first = asyncio.ensure_future(db.write(_insert("INSERT INTO parent (id) VALUES (10)")))
        second = asyncio.ensure_future(db.write(look))
        await asyncio.sleep(0.05)
        release.set()
        try:
            assert await held == "held" and await second == "looked"
            assert await first == "INSERT INTO parent (id) VALUES (10)"
        finally:
            await db.dispose()

    asyncio.run(scenario())
    # The first write was not committed yet when the second ran, nor was it answered.
    assert seen == {"committed": 0, "first answered": False}
    assert _rows(db, "parent") == [(10,)]


def test_when_the_commit_fails_no_write_of_the_batch_is_stored_and_each_gets_the_error(
    tmp_path,
):
    db = _store(tmp_path)

    writes = [
        _insert("INSERT INTO parent (id) VALUES (20)"),
        # A deferred foreign key is checked at COMMIT: this batch cannot commit.
        _insert("INSERT INTO child (id, parent_id) VALUES (1, 999)"),
    ]
    outcomes = asyncio.run(_behind_a_held_write(db, writes))
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert "FOREIGN KEY" in str(outcomes[0]).upper()
    assert _rows(db, "parent") == [] and _rows(db, "child") == []


def test_writes_after_a_failed_commit_go_on(tmp_path):
    db = _store(tmp_path)

    async def scenario() -> str:
        try:
            with pytest.raises(Exception, match=r"(?i)foreign key"):
                await db.write(_insert("INSERT INTO child (id, parent_id) VALUES (2, 999)"))
            return await db.write(_insert("INSERT INTO parent (id) VALUES (30)"))
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == "INSERT INTO parent (id) VALUES (30)"
    assert _rows(db, "parent") == [(30,)]


def test_a_write_after_the_store_is_closed_is_refused(tmp_path):
    db = _store(tmp_path)

    async def scenario() -> None:
        await db.dispose()
        with pytest.raises(RuntimeError, match="closed"):
            await db.write(_insert("INSERT INTO parent (id) VALUES (40)"))

    asyncio.run(scenario())
