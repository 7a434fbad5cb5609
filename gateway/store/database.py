"""Connections to the store: SQLite (embedded) or PostgreSQL, one engine per process.

Each transaction runs as one synchronous function on a worker thread, so a request pays one
thread hop for all of its statements instead of several per statement (measured: an async
driver spent ~0.4 ms per statement on hops; see the closing note of the server-core issue).
Short reads by key on SQLite skip even that hop (``Database.lookup``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import SingletonThreadPool

from gateway.store.driver_sql import DriverQuery, drop_queued, send_queued
from gateway.store.group_commit import GroupCommitWriter

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_MIGRATION_LOCK = 0x5A6F7267  # "Zorg": serialises migrations of several starting processes
T = TypeVar("T")


def to_sync_url(url: str) -> str:
    """Map plain database URLs to the drivers we ship (pysqlite, psycopg 3)."""
    for plain in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


class Database:
    """The store of one gateway process: engine, worker threads and the transaction policy."""

    def __init__(self, url: str, *, threads: int | None = None, echo: bool = False) -> None:
        self.url = to_sync_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if threads is None:
            # SQLite runs in this process and releases the GIL at every step: more threads
            # only contend for it (ITI-68 retrieves/s: 8 threads 420-470, 4 560, 2 600-640).
            # PostgreSQL's work is in its own processes; its throughput did not change.
            threads = 4 if self.is_sqlite else 8
        # The connection used last goes out first: one request after another then finds the
        # prepared statements (PostgreSQL) and, when nothing was written meanwhile, the cached
        # pages (SQLite) of the one before it.
        kwargs: dict[str, Any] = {"echo": echo, "pool_use_lifo": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            kwargs.update(pool_size=threads, max_overflow=0)
        else:
            # No pre-ping: it costs a round trip per transaction; stale connections are recycled.
            kwargs.update(pool_size=threads, max_overflow=0, pool_recycle=1800)
        self.engine: Engine = create_engine(self.url, **kwargs)
        _forget_per_transaction(self.engine)
        if not self.is_sqlite:
            _send_queued_writes(self.engine)
        # Short reads on SQLite run where they are asked for, on that thread's own connection
        # (see ``lookup``); never from the pool, so they never wait for a worker's connection.
        # SingletonThreadPool keeps five threads' connections: one event loop per process uses it.
        self._here: Engine | None = None
        if self.is_sqlite:
            _configure_sqlite(self.engine)
            self._here = create_engine(
                self.url,
                echo=echo,
                poolclass=SingletonThreadPool,
                connect_args={"timeout": 30, "check_same_thread": False},
            )
            _configure_sqlite(self._here)
            _forget_per_transaction(self._here)
        self._kept = threading.local()
        self._writer = self.engine.execution_options(zorgbrug_write=True)
        # Lookups on PostgreSQL run each statement on its own (see ``lookup``).
        self._single = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zorgbrug-db")
        self._group = GroupCommitWriter(self._writer) if self.is_sqlite else None

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one transaction that writes (on SQLite it locks up front, and shares
        the transaction with the writes waiting at the same moment, ``GroupCommitWriter``;
        on PostgreSQL ``work`` may leave the statement that goes with the COMMIT,
        ``defer_to_commit``)."""
        if self._group is not None:
            return await self._group.write(work)
        return await self._run(self._in_write_transaction, work)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one read transaction (one consistent snapshot)."""
        return await self._run(self._in_transaction, self.engine, work)

    async def lookup(self, work: Callable[[Connection], T]) -> T:
        """``read`` for short work: a few statements by key, no scans, content of at most one
        chunk (1 MiB).

        On SQLite it runs right here, on the event loop: the hop to a worker thread cost more
        CPU than a read by id itself (reads/s 2170 -> 2750, 0.49 -> 0.38 ms CPU per read). WAL
        readers take no lock that writers hold, so it does not wait for them. On PostgreSQL
        every statement waits for the network, so it runs on a worker thread.

        On both it runs without a transaction, each statement on its own: on PostgreSQL BEGIN
        and COMMIT were two of a read's four round trips, on SQLite BEGIN was 8.5% of a read's
        CPU (py-spy). Its statements may then see each other's commits, which for reads by key
        means what a moment later read would have seen; ``work`` must not write.
        """
        if self._here is None:
            return await self._run(self._in_transaction, self._single, work)
        conn = self._kept_connection(self._here)
        try:
            return work(conn)
        finally:
            if conn.in_transaction():  # one that a statement through SQLAlchemy began
                conn.rollback()

    def _kept_connection(self, engine: Engine) -> Connection:
        """This thread's connection of ``engine``, kept open: opening and closing one per
        lookup cost a tenth of a read's CPU (SQLAlchemy builds a Connection and its events)."""
        conn: Connection | None = getattr(self._kept, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept.conn = engine.connect()
        return conn

    def write_now(self, work: Callable[[Connection], T]) -> T:
        """``write`` for callers already on a worker thread (CLI, tests)."""
        return self._in_transaction(self._writer, work)

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(text("SELECT 1")))

    async def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision; safe from many processes at once."""
        await self._run(self.migrate_now)

    def migrate_now(self) -> None:
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"))
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    async def dispose(self) -> None:
        if self._group is not None:
            await self._run(self._group.close)
        await self._run(self.engine.dispose)
        if self._here is not None:
            kept: Connection | None = getattr(self._kept, "conn", None)
            if kept is not None:
                kept.close()
            self._here.dispose()
        self._executor.shutdown(wait=False)

    @staticmethod
    def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
        with engine.begin() as conn:
            return work(conn)

    def _in_write_transaction(self, work: Callable[[Connection], T]) -> T:
        with self._writer.begin() as conn:
            conn.info[_COMMIT_STEP] = None  # this transaction takes one
            try:
                value = work(conn)
                step = conn.info.get(_COMMIT_STEP)
                if step is not None:
                    step(conn)
            finally:
                del conn.info[_COMMIT_STEP]
            return value

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))


_COMMIT_STEP = "zorgbrug_commit_step"

# A connection's ``info`` key for what a transaction worked out from rows it read
# (``repository.derived_from_current``); forgotten when a transaction begins or ends and when a
# savepoint is rolled back (``_forget_per_transaction``).
TRANSACTION_MEMO = "zorgbrug_transaction_memo"

# A connection's ``info`` key for the row keys ``repository.reserve_rids`` took ahead: unused
# ones are dropped when a transaction begins or ends (a sequence never hands a value out twice).
RID_POOL = "zorgbrug_rid_pool"


def defer_to_commit(conn: Connection, step: Callable[[Connection], None]) -> bool:
    """Have ``step`` end the transaction of ``conn``: it runs after the transaction's work and
    must COMMIT it (``DriverQuery.first_then_commit``); what it runs after that is committed
    when the transaction ends. True when the transaction takes the step: a PostgreSQL
    ``Database.write`` that has none yet; otherwise the caller runs its statements at once."""
    if conn.info.get(_COMMIT_STEP, False) is not None:
        return False
    conn.info[_COMMIT_STEP] = step
    return True


# How PostgreSQL plans the statements of a search's transaction (``search_planning``).
Planning = Literal["for values", "generic", "kept"]


def search_planning(planning: Planning) -> str:
    """Columns of a SELECT that set ``planning`` for the rest of the transaction, on
    PostgreSQL (``repository.start_search`` asks for them).

    ``for values``: plan each statement for its values. psycopg prepares a statement run five
    times, and PostgreSQL then moves it to a generic plan, which for a search cannot tell a
    patient's few rows from a code's many (Observation?patient=&code= went from 2 to 45 ms per
    statement). Only for searches: planning every simple statement anew made reads about a
    fifth slower.

    ``generic``: plan once for any values, for a search that counts all its matches, which
    its driving criterion's index gives whatever their number: planned for its values,
    PostgreSQL took Patient?family=Jans&birthdate=ge1950&_total=accurate (5,000 candidates
    at 100,000 resources) for a page it could stop early at, and read every family name in
    row-key order (35 ms; generic: 5.6 ms). ``kept``: PostgreSQL's default, which
    needs no column (``start_search`` asks for none).

    Also without parallel workers: starting one cost a search more than its work
    (Patient?family=Jans&_count=20 at 100,000 resources, one request at a time: 13.9-17 ms
    with a worker, 7.5 ms without), and under load the workers only take the cores other
    requests need."""
    mode = {"for values": "force_custom_plan", "generic": "force_generic_plan"}[planning]
    return (
        f"set_config('plan_cache_mode', '{mode}', true), "
        "set_config('max_parallel_workers_per_gather', '0', true)"
    )


_BEGIN, _BEGIN_IMMEDIATE = DriverQuery("BEGIN"), DriverQuery("BEGIN IMMEDIATE")


def _forget_per_transaction(engine: Engine) -> None:
    def forget(conn: Connection, *_args: Any) -> None:
        conn.info.pop(TRANSACTION_MEMO, None)

    def forget_all(conn: Connection, *_args: Any) -> None:
        forget(conn)
        conn.info.pop(RID_POOL, None)

    for name in ("begin", "commit", "rollback"):
        event.listen(engine, name, forget_all)
    event.listen(engine, "rollback_savepoint", forget)


def _send_queued_writes(engine: Engine) -> None:
    """PostgreSQL: the writes ``DriverQuery.run_later`` queued go before any statement of
    SQLAlchemy's and before the COMMIT; a rollback forgets them."""

    def before_statement(conn: Connection, *_args: Any) -> None:
        send_queued(conn)

    event.listen(engine, "before_cursor_execute", before_statement)
    event.listen(engine, "commit", send_queued)
    event.listen(engine, "rollback", drop_queued)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so that writers can take the lock with IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY
        # instead of waiting; writers therefore lock at BEGIN.
        # On the driver's cursor: every transaction begins here, and exec_driver_sql's own
        # work cost more than the BEGIN (a twentieth of a read's CPU).
        immediate = conn.get_execution_options().get("zorgbrug_write", False)
        (_BEGIN_IMMEDIATE if immediate else _BEGIN).run(conn)
