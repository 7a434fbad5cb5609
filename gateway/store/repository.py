"""Row-level operations on the resource store, inside a transaction the caller owns."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import orjson
from sqlalchemy import Table, and_, bindparam, func, insert, null, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import FromClause

from gateway.audit.scope import Touch, note_write
from gateway.fhir.indexing import IndexRows
from gateway.fhir.search_params import SECURITY_CONTEXT
from gateway.store.database import RID_POOL, TRANSACTION_MEMO, Planning, search_planning
from gateway.store.driver_sql import DriverQuery, insert_into, json_rows, rows_of
from gateway.store.schema import (
    INDEX_TABLES,
    conditional_claims,
    idx_token,
    resource_shares,
    resource_versions,
    resources,
)

T = TypeVar("T")
_ACTIONS = {"POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


@dataclass(frozen=True)
class StoredVersion:
    """One version of a resource as stored; ``content`` is None for a deletion."""

    rid: int
    res_type: str
    res_id: str
    version: int
    last_updated_us: int
    deleted: bool
    content: bytes | None
    owner_org: str | None = None
    sealed: bool = False  # content holds markers of encrypted blobs (gateway.content)
    method: str | None = None
    # What consent decides on, as of this version (see ConsentColumns).
    patient_key: str | None = None
    patient_ref: str | None = None
    data_category: str | None = None
    data_date_us: int | None = None

    def touch(self, action: str) -> Touch:
        """This version as the audit trail notes it."""
        return Touch(
            action,
            f"{self.res_type}/{self.res_id}/_history/{self.version}",
            self.owner_org,
            self.patient_key,
            self.patient_ref,
            self.data_category,
            self.data_date_us,
            self.rid,
        )


# The number of columns of a StoredVersion (version_columns): a statement's rows may go on.
VERSION_WIDTH = len(fields(StoredVersion))


def version_columns(table: FromClause) -> tuple[Any, ...]:
    """The columns of a ``StoredVersion``, in its order, on ``resources`` or an alias of it."""
    c = table.c
    return (
        c.rid,
        c.res_type,
        c.res_id,
        c.version,
        c.last_updated_us,
        c.deleted,
        c.content,
        c.owner_org,
        c.sealed,
        null().label("method"),
        c.patient_key,
        c.patient_ref,
        c.data_category,
        c.data_date_us,
    )


_CURRENT = version_columns(resources)


# Built once: a statement built per call costs more than the lookup it makes (~40 us each).
_BY_ID = (resources.c.res_type == bindparam("res_type"), resources.c.res_id == bindparam("res_id"))
_SELECT_CURRENT = select(*_CURRENT).where(*_BY_ID)
_LOCK_CURRENT = _SELECT_CURRENT.with_for_update()


# Every read starts here: on the driver's cursor (see gateway.store.driver_sql).
_CURRENT_COLUMNS = (
    "rid, res_type, res_id, version, last_updated_us, deleted, content, owner_org, sealed, "
    "NULL, patient_key, patient_ref, data_category, data_date_us"
)
_CURRENT_BY_ID = DriverQuery(
    f"SELECT {_CURRENT_COLUMNS} FROM resources WHERE res_type = ? AND res_id = ?"  # noqa: S608
)


def current(conn: Connection, res_type: str, res_id: str) -> StoredVersion | None:
    """The current version (possibly a deletion) of a resource, or None if it never existed."""
    row = _CURRENT_BY_ID.first(conn, res_type, res_id)
    return None if row is None else stored(row)


def derived_from_current(
    conn: Connection, res_type: str, res_id: str, derive: Callable[[StoredVersion | None], T]
) -> T:
    """``derive`` of the current version of a resource (None if it never existed), worked out
    once per transaction: a transaction's resources about one patient each need the patient's
    BSN, and read the Patient for it each time (three times in a document push). A write of the
    resource in the transaction (``_note_version``), a savepoint's rollback and the end of the
    transaction forget it (``Database``)."""
    known = _memo_of(conn, res_type, res_id)
    if derive not in known:
        if _CURRENT_VERSION not in known:
            known[_CURRENT_VERSION] = current(conn, res_type, res_id)
        known[derive] = derive(known[_CURRENT_VERSION])
    value: T = known[derive]
    return value


def _remember_current(conn: Connection, version: StoredVersion) -> StoredVersion:
    """Note a current version a look-up found, so that ``derived_from_current`` need not read
    it again (a document push finds its Patient by BSN, then keys its resources by it)."""
    _memo_of(conn, version.res_type, version.res_id)[_CURRENT_VERSION] = version
    return version


def _memo_of(conn: Connection, res_type: str, res_id: str) -> dict[Any, Any]:
    memo: dict[tuple[str, str], dict[Any, Any]] = conn.info.setdefault(TRANSACTION_MEMO, {})
    return memo.setdefault((res_type, res_id), {})


_CURRENT_VERSION = object()  # the memo's key for the version itself


def current_beside(
    conn: Connection, res_type: str, res_id: str, scalar_sql: str, scalar_value: Any
) -> tuple[Any, StoredVersion | None]:
    """The value of a one-value query (``scalar_sql``, one parameter, constant SQL of our own)
    and ``current``, in one statement: reads by key ask for an account's state on every request,
    and on PostgreSQL each statement is a round trip."""
    row = _beside(scalar_sql).first(conn, scalar_value, res_type, res_id)
    assert row is not None, "the statement always answers one row"
    return row[0], None if row[1] is None else stored(row[1:])


@functools.lru_cache(maxsize=8)
def _beside(scalar_sql: str) -> DriverQuery:
    # One row whether or not the resource exists: the resource's columns are NULL if it does not.
    columns = ", ".join(
        f"resources.{c}" if c != "NULL" else c for c in _CURRENT_COLUMNS.split(", ")
    )
    return DriverQuery(
        f"SELECT ({scalar_sql}), {columns} FROM (SELECT 1) AS one "  # noqa: S608 - our schema
        "LEFT JOIN resources ON resources.res_type = ? AND resources.res_id = ?"
    )


def stored(row: tuple[Any, ...]) -> StoredVersion:
    """A version from a driver's row of its columns in the order of ``StoredVersion``."""
    values = list(row)
    values[5], values[8] = bool(values[5]), bool(values[8])  # SQLite hands back 0 or 1
    return StoredVersion(*values)


def lock_current(conn: Connection, res_type: str, res_id: str) -> StoredVersion | None:
    """Like ``current`` but holds a row lock (PostgreSQL) until the transaction ends."""
    statement = _LOCK_CURRENT if conn.dialect.name == "postgresql" else _SELECT_CURRENT
    row = conn.execute(statement, {"res_type": res_type, "res_id": res_id}).first()
    return StoredVersion(*row) if row else None


_VERSION = (
    resource_versions.c.rid,
    resource_versions.c.res_type,
    resource_versions.c.res_id,
    resource_versions.c.version,
    resource_versions.c.last_updated_us,
    resource_versions.c.method == "DELETE",
    resource_versions.c.content,
    resource_versions.c.owner_org,
    resource_versions.c.sealed,
    resource_versions.c.method,
    resource_versions.c.patient_key,
    resource_versions.c.patient_ref,
    resource_versions.c.data_category,
    resource_versions.c.data_date_us,
)


_SELECT_VERSION = select(*_VERSION).where(
    resource_versions.c.res_type == bindparam("res_type"),
    resource_versions.c.res_id == bindparam("res_id"),
    resource_versions.c.version == bindparam("version"),
)


def version(conn: Connection, res_type: str, res_id: str, version_id: int) -> StoredVersion | None:
    parameters = {"res_type": res_type, "res_id": res_id, "version": version_id}
    row = conn.execute(_SELECT_VERSION, parameters).first()
    return StoredVersion(*row) if row else None


@dataclass(frozen=True)
class ConsentColumns:
    """What consent decides on for a stored resource (see gateway.policy)."""

    patient_key: str | None = None  # the patient's BSN
    data_category: str | None = None  # the leaf data category (consent.leaf_of)
    data_date_us: int | None = None  # the clinical date


NO_CONSENT_COLUMNS = ConsentColumns()


class DuplicateId(Exception):
    """Another transaction created a resource with this type and id first."""


def insert_resource(
    conn: Connection,
    *,
    res_type: str,
    res_id: str,
    content: bytes,
    last_updated_us: int,
    owner_org: str | None,
    patient_ref: str | None,
    index: IndexRows,
    client_id: bool,
    sealed: bool = False,
    consent: ConsentColumns = NO_CONSENT_COLUMNS,
) -> int:
    """Insert version 1 of a new logical resource; returns its row key.

    Only an id chosen by the client can be inserted by another transaction at the same time;
    only then does a savepoint turn that race into ``DuplicateId``.
    """
    values = (
        res_type,
        res_id,
        *_resource_row(1, last_updated_us, content, owner_org, patient_ref, sealed, consent),
    )
    version = _version_row(
        None,
        res_type,
        res_id,
        1,
        last_updated_us,
        "POST",
        content,
        owner_org,
        sealed,
        patient_ref,
        consent,
    )
    postgres = conn.dialect.name == "postgresql"

    def insert() -> int:
        if postgres:  # the row, its first version and its index rows: one round trip
            return _one(_CREATE_PG.first(conn, *values, *version[1:], *_index_json(index)))
        return _one(_INSERT_RESOURCE.first(conn, *values))

    if not client_id and postgres:
        # A server id collides with none: the insert can wait for the transaction's next
        # statement (run_later), with a row key taken ahead (reserve_rids).
        rid = _reserved_rid(conn)
        _CREATE_WITH_RID_PG.run_later(conn, rid, *values, *version[1:], *_index_json(index))
    elif not client_id:
        rid = insert()
    else:
        try:
            with conn.begin_nested():
                rid = insert()
        except IntegrityError:
            raise DuplicateId(f"{res_type}/{res_id}") from None
    if not postgres:
        _INSERT_VERSION.run(conn, rid, *version[1:])
        _insert_index(conn, rid, owner_org, index)
    _note_version(conn, rid, version)
    return rid


def reserve_rids(conn: Connection, count: int) -> None:
    """PostgreSQL: take row keys for the ``count`` resources the transaction is about to
    create, in one round trip (the creates themselves then wait for the next statement)."""
    pool = conn.info.setdefault(RID_POOL, [])
    if conn.dialect.name == "postgresql" and count > len(pool):
        pool.extend(row[0] for row in _NEXT_RIDS.all(conn, count - len(pool)))


def _reserved_rid(conn: Connection) -> int:
    reserve_rids(conn, 1)
    return int(conn.info[RID_POOL].pop(0))


_NEXT_RIDS = DriverQuery("SELECT nextval('resources_rid_seq') FROM generate_series(1, ?)")


def write_version(
    conn: Connection,
    previous: StoredVersion,
    *,
    content: bytes | None,
    last_updated_us: int,
    method: str,
    owner_org: str | None,
    patient_ref: str | None,
    index: IndexRows | None,
    sealed: bool = False,
    consent: ConsentColumns = NO_CONSENT_COLUMNS,
) -> int:
    """Write the next version of an existing logical resource (an update or a deletion)."""
    new_version = previous.version + 1
    row = _resource_row(
        new_version, last_updated_us, content, owner_org, patient_ref, sealed, consent
    )
    rid = previous.rid
    changed = content is not None
    if content is None:  # a deletion is about the patient the resource was about
        patient_ref = previous.patient_ref
        consent = ConsentColumns(previous.patient_key, previous.data_category, None)
    version = _version_row(
        rid,
        previous.res_type,
        previous.res_id,
        new_version,
        last_updated_us,
        method,
        content,
        owner_org,
        sealed,
        patient_ref,
        consent,
    )
    if conn.dialect.name == "postgresql":  # one statement; a deletion inserts no index rows
        rows = _index_json(index if index is not None else IndexRows())
        _UPDATE_PG.run_later(
            conn, *row, rid, *version, *([rid] * len(_DELETE_INDEX)), rid, changed, *rows
        )
    else:
        _UPDATE_RESOURCE.run(conn, *row, rid)
        _INSERT_VERSION.run(conn, *version)
        for drop in _DELETE_INDEX:
            drop.run(conn, rid)
        if changed:
            _SHARES_OUTDATED.run(conn, rid)
        if index is not None:
            _insert_index(conn, rid, owner_org, index)
    _note_version(conn, rid, version)
    return new_version


def _version_row(
    rid: int | None,
    res_type: str,
    res_id: str,
    version_id: int,
    last_updated_us: int,
    method: str,
    content: bytes | None,
    owner_org: str | None,
    sealed: bool,
    patient_ref: str | None,
    consent: ConsentColumns,
) -> tuple[Any, ...]:
    """The values of ``_VERSION_COLUMNS`` (``rid`` first), placed by name."""
    values = {
        "rid": rid,
        "res_type": res_type,
        "res_id": res_id,
        "version": version_id,
        "last_updated_us": last_updated_us,
        "method": method,
        "content": content,
        "owner_org": owner_org,
        "sealed": sealed,
        "patient_ref": patient_ref,
        **vars(consent),
    }
    return tuple(values[c] for c in _VERSION_COLUMNS)


def _note_version(conn: Connection, rid: int, version: tuple[Any, ...]) -> None:
    """Tell the audit scope of the transaction about a version just written, and forget what
    the transaction derived from the resource's version before."""
    v = dict(zip(_VERSION_COLUMNS, version, strict=True))
    memo = conn.info.get(TRANSACTION_MEMO)
    if memo:
        memo.pop((v["res_type"], v["res_id"]), None)
    note_write(
        conn,
        Touch(
            _ACTIONS[v["method"]],
            f"{v['res_type']}/{v['res_id']}/_history/{v['version']}",
            v["owner_org"],
            v["patient_key"],
            v["patient_ref"],
            v["data_category"],
            v["data_date_us"],
            rid,
        ),
    )


def _index_json(index: IndexRows) -> list[str]:
    """PostgreSQL: per index table in ``_INSERT_INDEX`` order, its rows as one JSON array
    (``json_rows``; a batch per table cost the gateway more CPU in psycopg than the rows cost
    PostgreSQL, and so did an array per column)."""
    by_kind = index.by_kind()
    return [orjson.dumps(by_kind[kind]).decode() for kind in _INSERT_INDEX]


def _insert_index(conn: Connection, rid: int, owner_org: str | None, index: IndexRows) -> None:
    """SQLite: the index rows of one resource, a batch per table."""
    by_kind = index.by_kind()
    for kind, rows in by_kind.items():
        if rows:
            columns, statement = _INSERT_INDEX[kind]
            statement.run_many(conn, [(rid, owner_org, *(row[c] for c in columns)) for row in rows])


def _one(row: tuple[Any, ...] | None) -> int:
    """The row key a statement gave back first (an INSERT ... RETURNING, the newest one)."""
    if row is None:  # not an assert: it must hold also under python -O
        raise RuntimeError("the statement returned no row key")
    return int(row[0])


# Every write of a resource runs these: on the driver's cursor (see gateway.store.driver_sql).
_RESOURCE_COLUMNS = (
    "version",
    "last_updated_us",
    "deleted",
    "content",
    "owner_org",
    "patient_ref",
    "sealed",
    "patient_key",
    "data_category",
    "data_date_us",
)
_INSERT_RESOURCE = insert_into("resources", ("res_type", "res_id", *_RESOURCE_COLUMNS), "rid")
_UPDATE_RESOURCE = DriverQuery(  # our own column names, every value bound
    f"UPDATE resources SET {', '.join(f'{c} = ?' for c in _RESOURCE_COLUMNS)} WHERE rid = ?"  # noqa: S608
)
_VERSION_COLUMNS = (
    "rid",
    "res_type",
    "res_id",
    "version",
    "last_updated_us",
    "method",
    "content",
    "owner_org",
    "sealed",
    "patient_key",
    "patient_ref",
    "data_category",
    "data_date_us",
)
_INSERT_VERSION = insert_into("resource_versions", _VERSION_COLUMNS)


def _resource_row(
    version: int,
    last_updated_us: int,
    content: bytes | None,
    owner_org: str | None,
    patient_ref: str | None,
    sealed: bool,
    consent: ConsentColumns,
) -> tuple[Any, ...]:
    """The values of ``_RESOURCE_COLUMNS``, placed by name: by position, the owner, patient
    reference, BSN and category (all strings) could change places without an error."""
    values = {
        "version": version,
        "last_updated_us": last_updated_us,
        "deleted": content is None,
        "content": content,
        "owner_org": owner_org,
        "patient_ref": patient_ref,
        "sealed": sealed,
        **vars(consent),
    }
    return tuple(values[c] for c in _RESOURCE_COLUMNS)


# Columns of an index row that come from the resource, not from ``IndexRows``.
_INDEX_KEYS = ("rid", "owner_org")


def _index_insert(table: Table) -> tuple[tuple[str, ...], DriverQuery]:
    """Index rows: the row key and owner, then the columns ``IndexRows`` fills, in the table's
    order."""
    columns = tuple(c.name for c in table.columns if c.name not in _INDEX_KEYS)
    return columns, insert_into(table.name, (*_INDEX_KEYS, *columns))


def _index_inserts_pg(written: str) -> list[str]:
    """PostgreSQL: WITH items inserting one resource's index rows with the row key and owner of
    the resource row the WITH item ``written`` returns, each table's rows from one JSON
    parameter (``json_rows``)."""
    inserts = []
    for table in INDEX_TABLES.values():
        columns = [c for c in table.columns if c.name not in _INDEX_KEYS]
        names = ", ".join(c.name for c in columns)
        picked = ", ".join(f'json_rows."{c.name}"' for c in columns)
        inserts.append(
            f"ins_{table.name} AS (INSERT INTO {table.name} ({', '.join(_INDEX_KEYS)}, {names}) "  # noqa: S608 - our schema
            f"SELECT {written}.rid, {written}.owner_org, {picked} FROM {written}, "
            f"{json_rows(columns)})"
        )
    return inserts


# PostgreSQL writes a resource's row, its version and its index rows in one statement (the
# sub-statements of a WITH all run, on one snapshot): each statement cost the gateway more
# CPU in psycopg than the rows cost the database, and a round trip.
_NEW_RID = "(SELECT rid FROM created)"
_FIRST_VERSION = _INSERT_VERSION.sql.replace("VALUES (?", f"VALUES ({_NEW_RID}", 1)
_CREATE_RESOURCE_PG = insert_into(
    "resources", ("res_type", "res_id", *_RESOURCE_COLUMNS), "rid, owner_org"
)
_CREATE_PG = DriverQuery(
    f"WITH created AS ({_CREATE_RESOURCE_PG.sql}), first_version AS ({_FIRST_VERSION}), "  # noqa: S608
    f"{', '.join(_index_inserts_pg('created'))} SELECT rid FROM created"
)
_CREATE_WITH_RID_RESOURCE_PG = insert_into(
    "resources", ("rid", "res_type", "res_id", *_RESOURCE_COLUMNS), "rid, owner_org"
)
_CREATE_WITH_RID_PG = DriverQuery(  # a server id: the row key reserved (reserve_rids)
    f"WITH created AS ({_CREATE_WITH_RID_RESOURCE_PG.sql}), first_version AS ({_FIRST_VERSION}), "
    f"{', '.join(_index_inserts_pg('created'))} SELECT 1"
)
_DELETE_INDEX_PG = ", ".join(
    f"del_{table.name} AS (DELETE FROM {table.name} WHERE rid = ?)"  # noqa: S608 - our schema
    for table in INDEX_TABLES.values()
)
# A new version of a resource is not what was sent: its shares keep the version they had, no
# longer the current one (a live share, of a Task, goes on; a deletion is shown as such).
_SHARES_OUTDATED = DriverQuery(
    "UPDATE resource_shares SET latest = false WHERE rid = ? AND version IS NOT NULL AND latest"
)
_UPDATE_PG = DriverQuery(
    f"WITH updated AS ({_UPDATE_RESOURCE.sql} RETURNING rid, owner_org), "
    f"next_version AS ({_INSERT_VERSION.sql}), {_DELETE_INDEX_PG}, "
    f"outdated AS ({_SHARES_OUTDATED.sql} AND ?::boolean), "
    f"{', '.join(_index_inserts_pg('updated'))} SELECT 1"
)
_INSERT_INDEX = {kind: _index_insert(table) for kind, table in INDEX_TABLES.items()}
_DELETE_INDEX = tuple(
    DriverQuery(f"DELETE FROM {table.name} WHERE rid = ?")  # noqa: S608 - our own table names
    for table in INDEX_TABLES.values()
)


def claim_condition(conn: Connection, res_type: str, key: str, res_id: str) -> str | None:
    """Claim a conditional-create key for ``res_id``; returns the holder's id if already taken."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(conditional_claims),
                {"res_type": res_type, "query_key": key, "res_id": res_id},
            )
        return None
    except IntegrityError:
        holder = (
            conn.execute(
                select(conditional_claims.c.res_id).where(
                    conditional_claims.c.res_type == res_type,
                    conditional_claims.c.query_key == key,
                )
            )
        ).scalar_one()
        return str(holder)


def move_claim(conn: Connection, res_type: str, key: str, stale_id: str, res_id: str) -> bool:
    """Hand a claim whose resource no longer matches to a new resource; False if it moved."""
    result = conn.execute(
        update(conditional_claims)
        .where(
            conditional_claims.c.res_type == res_type,
            conditional_claims.c.query_key == key,
            conditional_claims.c.res_id == stale_id,
        )
        .values(res_id=res_id)
    )
    return bool(result.rowcount)


def history(
    conn: Connection,
    *,
    res_type: str | None,
    res_id: str | None,
    since_us: int | None,
    snapshot: int | None,
    count: int,
    offset: int,
    visible: Any = None,
) -> tuple[list[StoredVersion], int, int]:
    """Versions newest first, the total, and the snapshot key that keeps pages stable."""
    v = resource_versions
    conditions: list[Any] = []
    if res_type is not None:
        conditions.append(v.c.res_type == res_type)
    if res_id is not None:
        conditions.append(v.c.res_id == res_id)
    if since_us is not None:
        conditions.append(v.c.last_updated_us >= since_us)
    if visible is not None and (extra := visible(v)) is not None:
        conditions.append(extra)
    if snapshot is None:
        snapshot = (conn.execute(select(func.coalesce(func.max(v.c.vpk), 0)))).scalar_one()
    conditions.append(v.c.vpk <= snapshot)
    total = (conn.execute(select(func.count()).select_from(v).where(*conditions))).scalar_one()
    rows = (
        conn.execute(
            select(*_VERSION)
            .where(*conditions)
            .order_by(v.c.vpk.desc())
            .limit(count)
            .offset(offset)
        )
    ).all()
    return [StoredVersion(*row) for row in rows], int(total), int(snapshot)


_NEWEST = "(SELECT coalesce(max(rid), 0) FROM resources)"
_MAX_RID = DriverQuery(f"SELECT {_NEWEST}")


def max_rid(conn: Connection) -> int:
    return _one(_MAX_RID.first(conn))


def start_search(
    conn: Connection,
    *,
    snapshot: bool,
    planning: Planning = "for values",
    beside: tuple[str, Any] | None = None,
) -> tuple[int | None, Any]:
    """Have PostgreSQL plan the search's statements as ``planning`` says (``search_planning``);
    with ``snapshot``, the newest row key, which pins the search's pages; with ``beside`` (a
    one-value query, constant SQL of our own, and its one parameter), its value: one
    statement, one round trip, for all three. Returns the row key and the value (each None
    when not asked for).

    ``kept`` lets PostgreSQL keep a generic plan, for searches whose every value matches few
    rows (``search_sql.keyed``): planning their statements anew took ten times as long as
    running them (Observation?patient.identifier=<BSN> at 100,000 resources: 0.65 ms to plan
    the page, 0.06 ms to run it)."""
    plans = planning != "kept" and conn.dialect.name == "postgresql"
    query = _search_start(beside[0] if beside else None, snapshot, planning if plans else None)
    if query is None:
        return None, None
    row = query.first(conn, *([beside[1]] if beside else []))
    assert row is not None, "a SELECT without FROM answers one row"
    value = row[0] if beside else None
    return (int(row[-1]) if snapshot else None), value


@functools.lru_cache(maxsize=16)
def _search_start(
    beside_sql: str | None, snapshot: bool, planning: Planning | None
) -> DriverQuery | None:
    columns = [f"({beside_sql})"] if beside_sql else []
    if planning is not None:
        columns.append(search_planning(planning))
    if snapshot:
        columns.append(_NEWEST)  # last: the row key is ``row[-1]``
    return DriverQuery(f"SELECT {', '.join(columns)}") if columns else None


def share(
    conn: Connection,
    sent: list[tuple[int, int | None]],
    organization: str,
    now_us: int,
    delivery_id: str | None = None,
) -> None:
    """Let ``organization`` see these resources (row key, the version sent or None for a live
    share; with a ``delivery_id``: once that delivery is admitted). A resource it had already
    is now its copy at the newer version; how it was admitted stays as it was, also when a
    concurrent transaction shares the same resource (two pushes about one patient)."""
    versions: dict[int, int | None] = {}
    for rid, version in sorted(sent, key=lambda pair: pair[0]):
        versions[rid] = version
    if not versions:
        return
    active = delivery_id is None
    if conn.dialect.name == "postgresql":  # one statement, not one per resource
        rids, sent_versions = list(versions), list(versions.values())
        _SHARE_PG.run_later(
            conn,
            rids,
            sent_versions,
            rids,  # the rows to renew found by key (joined to the array, PostgreSQL scanned)
            organization,
            organization,
            now_us,
            active,
            delivery_id,
        )
        return
    rows = list(versions.items())
    _RESHARE.run_many(conn, [(v, rid, organization, v, v) for rid, v in rows])
    _SHARE.run_many(conn, [(rid, organization, now_us, active, delivery_id, v) for rid, v in rows])


# A share that exists stays as it was admitted; a newer version sent makes it that version's.
# Only a changed share is updated: ON CONFLICT DO UPDATE locks the conflicting row even when
# its WHERE is false, so every push about a patient would take the lock of the patient's share
# row and concurrent pushes about one patient would queue on it. On PostgreSQL a check before
# the insert let two transactions both insert, and the second failed on the primary key.
_SHARE_PG = DriverQuery(
    "WITH sent(rid, version) AS (SELECT * FROM unnest(?::bigint[], ?::integer[])), "
    "renewed AS (UPDATE resource_shares s SET version = sent.version, latest = true FROM sent "
    "WHERE s.rid = ANY(?::bigint[]) AND s.rid = sent.rid AND s.org_ura = ? "
    "AND s.version IS NOT NULL "
    "AND sent.version IS NOT NULL AND (s.version < sent.version OR NOT s.latest)) "
    "INSERT INTO resource_shares (rid, org_ura, created_us, active, delivery_id, version) "
    "SELECT rid, ?, ?::bigint, ?::boolean, ?::text, version FROM sent "
    "ON CONFLICT (rid, org_ura) DO NOTHING",
    planned_per_run=True,  # kept, its plan scanned every share (10,000 pushes: 8 ms each)
)
_RESHARE = DriverQuery(
    "UPDATE resource_shares SET version = ?, latest = true WHERE rid = ? AND org_ura = ? "
    "AND version IS NOT NULL AND ? IS NOT NULL AND (version < ? OR NOT latest)"
)
_SHARE = DriverQuery(
    "INSERT INTO resource_shares (rid, org_ura, created_us, active, delivery_id, version) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rid, org_ura) DO NOTHING"
)


def activate_shares(conn: Connection, delivery_id: str) -> None:
    """The shares waiting for ``delivery_id`` take effect."""
    conn.execute(
        update(resource_shares)
        .where(resource_shares.c.delivery_id == delivery_id)
        .values(active=True)
    )


def is_shared(conn: Connection, rid: int, organization: str) -> bool:
    return (
        conn.execute(
            select(resource_shares.c.rid).where(
                resource_shares.c.rid == rid, resource_shares.c.org_ura == organization
            )
        ).first()
        is not None
    )


def shared_with(conn: Connection, rid: int) -> list[str]:
    """The organisations a resource was addressed to."""
    rows = conn.execute(
        select(resource_shares.c.org_ura).where(resource_shares.c.rid == rid)
    ).scalars()
    return sorted(str(org) for org in rows)


def patient_key_of(conn: Connection, rid: int) -> str | None:
    return conn.execute(
        select(resources.c.patient_key).where(resources.c.rid == rid)
    ).scalar_one_or_none()


def await_context(conn: Connection, target: str) -> None:
    """Note that a Binary written in this transaction names ``target`` as its security context
    before ``target`` exists (an entry further on in a transaction Bundle)."""
    _memo_of(conn, SECURITY_CONTEXT, "")[target] = True


def awaited_context(conn: Connection, target: str) -> bool:
    """Whether a Binary written earlier in this transaction awaits ``target`` (``await_context``):
    only then does a new resource look for the Binaries it governs."""
    return target in _memo_of(conn, SECURITY_CONTEXT, "")


def in_security_context(conn: Connection, target: str, owner: str | None) -> list[tuple[int, str]]:
    """The row keys and ids of the owner's Binaries whose ``securityContext`` is ``target``
    (``Type/id``)."""
    res_type, _, res_id = target.partition("/")
    r = INDEX_TABLES["reference"]
    return [
        (rid, binary_id)
        for rid, binary_id in conn.execute(
            select(r.c.rid, resources.c.res_id)
            .join_from(r, resources, resources.c.rid == r.c.rid)
            .where(
                r.c.res_type == "Binary",
                r.c.param == SECURITY_CONTEXT,
                r.c.target_id == res_id,
                r.c.target_type == res_type,
                r.c.owner_org == owner,
            )
        )
    ]


def set_consent_columns(
    conn: Connection, rid: int, patient_ref: str | None, consent: ConsentColumns
) -> None:
    """Give a resource, every version of it, another patient and consent facts (a Binary whose
    security context changed)."""
    values = {"patient_ref": patient_ref, **vars(consent)}
    for table in (resources, resource_versions):
        conn.execute(update(table).where(table.c.rid == rid).values(**values))


def rid_passes(
    conn: Connection, rid: int, check: tuple[Any, dict[str, Any]]
) -> tuple[Any, ...] | None:
    """Whether the resource ``rid`` passes a prepared check (search_sql.visible_rid): None when
    not, else what the check tells of its basis (search_sql.basis_columns)."""
    statement, values = check
    found = rows_of(conn, statement, {**values, "rid": rid})
    return tuple(found[0][1:]) if found else None


def touches(conn: Connection, rids: list[int], action: str = "R") -> dict[int, Touch]:
    """The current versions of ``rids`` as the audit trail notes them."""
    if not rids:
        return {}
    rows = conn.execute(select(*_CURRENT).where(resources.c.rid.in_(rids)))
    return {row.rid: StoredVersion(*row).touch(action) for row in rows}


def hidden_holdings(
    conn: Connection, patient_key: str, res_type: str, check: tuple[Any, dict[str, Any]]
) -> list[StoredVersion]:
    """One current resource of ``res_type`` about the patient, without its content, per other
    organisation holding such data that a prepared check (search_sql.hidden_of_patient) keeps
    hidden: for the audit of what a patient's search did not show."""
    statement, values = check
    # On the driver's cursor: through SQLAlchemy's Connection.execute this statement cost a
    # search about one patient ~0.9 ms of CPU more ('other, opened', bench_consent_search.py).
    rows = rows_of(conn, statement, {**values, "patient": patient_key, "res_type": res_type})
    first: dict[str | None, StoredVersion] = {}
    for row in rows:
        version = stored(row)
        first.setdefault(version.owner_org, version)
    return list(first.values())


def version_passes(conn: Connection, stored: StoredVersion, visible: Any) -> bool:
    """Whether one version passes a visibility condition, judged on its own columns."""
    v = resource_versions
    statement = select(v.c.vpk).where(
        v.c.res_type == stored.res_type, v.c.res_id == stored.res_id, v.c.version == stored.version
    )
    condition = visible(v)
    if condition is not None:
        statement = statement.where(condition)
    return conn.execute(statement).first() is not None


def rekey_patient(conn: Connection, patient_ref: str, patient_key: str | None) -> None:
    """Give every resource about ``patient_ref`` the patient's (new) BSN as patient key."""
    for statement in _REKEY:  # every version is about the same person
        conn.execute(statement, {"ref": patient_ref, "key": patient_key})


_REKEY = tuple(
    update(table)
    .where(table.c.patient_ref == bindparam("ref"), table.c.res_type != "Patient")
    .values(patient_key=bindparam("key"))
    for table in (resources, resource_versions)
)


def has_patient(conn: Connection, patient_key: str, organization: str | None) -> bool:
    """Whether ``organization`` has a Patient record with this BSN."""
    return (
        conn.execute(
            select(resources.c.rid).where(
                resources.c.patient_key == patient_key,
                resources.c.res_type == "Patient",
                resources.c.owner_org == organization,
                resources.c.deleted.is_(False),
            )
        ).first()
        is not None
    )


def find_by_token(
    conn: Connection,
    res_type: str,
    param: str,
    system: str | None,
    code: str,
    owner: str | None,
    limit: int = 2,
) -> list[StoredVersion]:
    """Current resources of ``owner`` whose token ``param`` is ``system|code``, oldest first: one
    indexed lookup, for the gateway's own look-ups (not a client's search)."""
    statement = _token_lookup(system is None, owner is None, limit)
    values = {"res_type": res_type, "param": param, "code": code}
    if system is not None:
        values["system"] = system
    if owner is not None:
        values["owner"] = owner
    return [stored(row) for row in rows_of(conn, statement, values)]


@functools.cache
def _token_lookup(no_system: bool, no_owner: bool, limit: int) -> Any:
    # Built once per shape (IS NULL differs from = :value): every document push runs several.
    return (
        select(*_CURRENT)
        .join(idx_token, idx_token.c.rid == resources.c.rid)
        .where(
            idx_token.c.res_type == bindparam("res_type"),
            idx_token.c.param == bindparam("param"),
            idx_token.c.code == bindparam("code"),
            idx_token.c.system.is_(None)
            if no_system
            else idx_token.c.system == bindparam("system"),
            resources.c.owner_org.is_(None)
            if no_owner
            else resources.c.owner_org == bindparam("owner"),
            resources.c.deleted.is_(False),
        )
        .order_by(resources.c.rid)
        .limit(limit)
    )


TokenKey = tuple[str, str, str, str]  # resource type, search parameter, system, code


def find_each_by_token(
    conn: Connection, keys: Sequence[TokenKey], owner: str
) -> dict[TokenKey, StoredVersion]:
    """``find_by_token`` of several tokens (each with a system) in one statement: for each key
    that matches, ``owner``'s oldest current resource (a document push asks for its documents'
    and its SubmissionSet's identifiers, on PostgreSQL a round trip each)."""
    wanted = list(dict.fromkeys(keys))
    values: dict[str, Any] = {"owner": owner}
    for n, (res_type, param, system, code) in enumerate(wanted):
        values |= {f"type_{n}": res_type, f"param_{n}": param, f"system_{n}": system}
        values[f"code_{n}"] = code
    found: dict[TokenKey, StoredVersion] = {}
    for row in rows_of(conn, _tokens_lookup(len(wanted)), values) if wanted else []:
        found.setdefault(row[:4], stored(row[4:]))  # oldest first
    return found


@functools.lru_cache(maxsize=16)  # one per number of keys: a bundle decides how many
def _tokens_lookup(count: int) -> Any:
    # The owner as the index rows carry it: judged on resources, PostgreSQL's generic plan of
    # this statement, made while the store was small, read every resource of the owner
    # (a document push slowed down as the sender's records grew).
    t = idx_token
    return (
        select(t.c.res_type, t.c.param, t.c.system, t.c.code, *_CURRENT)
        .select_from(resources)
        .join(t, t.c.rid == resources.c.rid)
        .where(
            or_(
                *(
                    and_(
                        t.c.res_type == bindparam(f"type_{n}"),
                        t.c.param == bindparam(f"param_{n}"),
                        t.c.code == bindparam(f"code_{n}"),
                        t.c.system == bindparam(f"system_{n}"),
                    )
                    for n in range(count)
                )
            ),
            t.c.owner_org == bindparam("owner"),
            resources.c.deleted.is_(False),
        )
        .order_by(resources.c.rid)
    )


def find_patient(conn: Connection, patient_key: str, owner: str | None) -> StoredVersion | None:
    """The oldest current Patient of ``owner`` with this BSN."""
    if owner is None:
        rows = rows_of(conn, _FIND_PATIENT_OF_NOBODY, {"patient_key": patient_key})
    else:
        rows = rows_of(conn, _FIND_PATIENT, {"patient_key": patient_key, "owner": owner})
    return _remember_current(conn, stored(rows[0])) if rows else None


_FIND_PATIENT, _FIND_PATIENT_OF_NOBODY = (
    select(*_CURRENT)
    .where(
        resources.c.patient_key == bindparam("patient_key"),
        resources.c.res_type == "Patient",
        owner,
        resources.c.deleted.is_(False),
    )
    .order_by(resources.c.rid)
    .limit(1)
    for owner in (resources.c.owner_org == bindparam("owner"), resources.c.owner_org.is_(None))
)
