"""The floor: the least a FHIR create/read server on this stack must do, to compare the gateway with.

POST /fhir/{type}: parse the body with orjson, validate it with the fhir.resources R4B model,
INSERT the bytes in one statement, answer 201 with the bytes (and a Location). GET
/fhir/{type}/{id}: SELECT the content by primary key, answer the bytes. FastAPI, SQLAlchemy Core.

FLOOR_DATABASE_URL names the store; its driver picks the variant:

* async: ``sqlite+aiosqlite://`` / ``postgresql+asyncpg://`` with SQLAlchemy's asyncio engine;
* sync: ``sqlite://`` / ``postgresql+psycopg://`` with a synchronous engine, each request's one
  statement run on a worker thread (one thread hop per request, as the gateway does since it
  moved to synchronous drivers).

SQLite runs in WAL mode with synchronous=NORMAL, like the gateway, and the garbage collector is
set as the gateway sets it once started (``gateway/api/heap.py``).

Run: python -m uvicorn floor_app:create_app --factory --app-dir bench ...
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from sqlalchemy import (
    Column,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    event,
    insert,
    select,
)

from gateway.api.heap import settle_after_startup

FHIR_JSON = "application/fhir+json"
ASYNC_DRIVERS = ("sqlite+aiosqlite://", "postgresql+asyncpg://")
THREADS = 8  # worker threads and pooled connections of the sync variant (the gateway's default)
# As the gateway: FastAPI's own OpenTelemetry instrumentation off (a lookup per request).
NO_TELEMETRY: Any = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}

metadata = MetaData()
floor_resources = Table(
    "floor_resources",
    metadata,
    Column("res_id", String(64), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
)
INSERT = insert(floor_resources)
SELECT = select(floor_resources.c.content).where(floor_resources.c.res_id == bindparam("res_id"))


def is_async(url: str) -> bool:
    return url.startswith(ASYNC_DRIVERS)


def _sqlite_pragmas(sync_engine: Engine) -> None:
    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def make_async_engine(url: str) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20)


def make_sync_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=THREADS,
            max_overflow=0,
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_size=THREADS, max_overflow=0)


class _AsyncStore:
    def __init__(self, url: str) -> None:
        self.engine = make_async_engine(url)

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    async def insert(self, params: dict[str, Any]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(INSERT, params)

    async def content(self, res_id: str) -> bytes | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(SELECT, {"res_id": res_id})).scalar()  # type: ignore[no-any-return]

    async def stop(self) -> None:
        await self.engine.dispose()


class _SyncStore:
    def __init__(self, url: str) -> None:
        self.engine = make_sync_engine(url)
        self.executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="floor-db")

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        await self._run(metadata.create_all, self.engine)

    def _insert(self, params: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(INSERT, params)

    def _content(self, res_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(SELECT, {"res_id": res_id}).scalar()  # type: ignore[no-any-return]

    async def insert(self, params: dict[str, Any]) -> None:
        await self._run(self._insert, params)

    async def content(self, res_id: str) -> bytes | None:
        return await self._run(self._content, res_id)  # type: ignore[no-any-return]

    async def stop(self) -> None:
        await self._run(self.engine.dispose)
        self.executor.shutdown(wait=False)


def create_app() -> FastAPI:
    url = os.environ["FLOOR_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = _AsyncStore(url) if is_async(url) else _SyncStore(url)
        await store.start()
        app.state.store = store
        settle_after_startup()  # the gateway's collector settings: the ratio compares the apps
        yield
        await store.stop()

    app = FastAPI(
        lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None, telemetry=NO_TELEMETRY
    )

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.post("/fhir/{res_type}")
    async def create(request: Request, res_type: str) -> Response:
        body = await request.body()
        try:
            get_fhir_model_class(res_type).model_validate(orjson.loads(body))
        except (ValidationError, ValueError, KeyError) as exc:
            return Response(str(exc)[:500].encode(), status_code=400)
        res_id = str(uuid.uuid4())
        await request.app.state.store.insert(
            {"res_id": res_id, "res_type": res_type, "content": body}
        )
        return Response(
            body,
            status_code=201,
            media_type=FHIR_JSON,
            headers={"Location": f"/fhir/{res_type}/{res_id}/_history/1"},
        )

    @app.get("/fhir/{res_type}/{res_id}")
    async def read(request: Request, res_type: str, res_id: str) -> Response:
        content = await request.app.state.store.content(res_id)
        if content is None:
            return Response(b"", status_code=404)
        return Response(content, media_type=FHIR_JSON)

    return app


def bulk_fill(url: str, rows: list[tuple[str, str, bytes]]) -> None:
    """Insert rows (id, type, content) directly: fills the floor's store to the gateway's size."""
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = make_sync_engine(sync_url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            for start in range(0, len(rows), 5000):
                conn.execute(
                    INSERT,
                    [
                        {"res_id": i, "res_type": t, "content": c}
                        for i, t, c in rows[start : start + 5000]
                    ],
                )
    finally:
        engine.dispose()
