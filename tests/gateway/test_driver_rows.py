"""``driver_sql.rows_of`` runs a SQLAlchemy statement on the driver's cursor, compiled once per
shape: it must give the rows SQLAlchemy gives, for lists of any length (also none), and compute
a clock parameter on each run rather than keep the one of its first."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from harness import BACKENDS, FreshDatabase
from sqlalchemy import BigInteger, bindparam, literal, select, union_all

from gateway.store.database import Database
from gateway.store.driver_sql import rows_of
from gateway.store.schema import emergencies

_clock = itertools.count(1)
# A value computed for each execution, as the visibility checks' clock is.
_TICK = bindparam("tick", callable_=lambda: next(_clock), type_=BigInteger)

E = emergencies.c
SHARES = union_all(
    select(literal("row"), E.start_us, E.actor_org).where(
        E.start_us.in_(bindparam("rids", expanding=True)),
        E.actor_org.in_(("90000001", "90000002")),
        E.end_us > 3,
    ),
    select(literal("clock"), _TICK, bindparam("org")),
).order_by("start_us", "actor_org")


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    fresh = FreshDatabase(request.param, tmp_path)
    database = Database(fresh.url, threads=1)
    asyncio.run(database.migrate())
    rows = [
        {
            "emergency_id": f"{rid}-{org}",
            "actor_id": "someone",
            "actor_org": org,
            "patient_key": "999911120",
            "reason": "test",
            "start_us": rid,
            "end_us": 0 if rid == 3 else 10,
        }
        for rid in range(1, 6)
        for org in ("90000001", "90000002", "90000003")
    ]
    asyncio.run(database.write(lambda conn: conn.execute(emergencies.insert(), rows)))
    yield database
    asyncio.run(database.dispose())
    fresh.drop()


def run(db, work):
    return asyncio.run(db.read(work))


@pytest.mark.parametrize("rids", [[], [2], [1, 3, 5], [5, 4, 3, 2, 1, 9]])
def test_the_rows_are_sqlalchemys_for_lists_of_any_length(db, rids):
    values = {"rids": rids, "org": "90000009"}

    def both(conn):
        mine = rows_of(conn, SHARES, values)
        theirs = [tuple(row) for row in conn.execute(SHARES, values)]
        return mine, theirs

    mine, theirs = run(db, both)
    strip = [row for row in mine if row[0] == "row"], [r for r in theirs if r[0] == "row"]
    assert strip[0] == strip[1]
    assert len(strip[0]) == 2 * len([r for r in set(rids) if r in (1, 2, 4, 5)])
    assert [row[2] for row in mine if row[0] == "clock"] == ["90000009"]


def test_a_computed_value_is_computed_on_every_run(db):
    def ticks(conn):
        return [
            row[1]
            for _ in range(3)
            for row in rows_of(conn, SHARES, {"rids": [1], "org": "x"})
            if row[0] == "clock"
        ]

    first, second, third = run(db, ticks)
    assert first < second < third
