"""The exchange floor: the least an ITI-65 / ITI-68 server on this stack must do, to compare with.

What it does:

* ``POST /fhir`` takes the same ITI-65 Provide Document Bundle bytes as the gateway, parses them
  with orjson, validates every entry's resource with its ``fhir.resources`` R4B model (the model
  validation the gateway pays too; for the Binary that includes decoding its base64 ``data``),
  and in ONE transaction inserts each non-Binary resource's JSON (one row each) and the decoded
  document bytes with their content type (one row per Binary). It answers a small
  transaction-response with a ``201`` and a location per entry.
* ``GET /fhir/Binary/{id}`` selects the stored document bytes and content type by primary key
  and answers them as they are (ITI-68 raw retrieve).

What it does not do (that is the point of a floor): authentication or access control, the
gateway's extra checks (R4 shape and bindings, Dutch identifiers, MHD rules), reference
rewriting, patient matching, duplicate detection, search indexes, versions/history, encryption
of the content, hashing, shares, notification Tasks, the outbox, content negotiation, streaming.

``FLOOR_DATABASE_URL`` names the store, as for ``bench/floor_app.py``; its driver picks the
variant: async (``sqlite+aiosqlite://``, ``postgresql+asyncpg://``, SQLAlchemy asyncio) or sync
(``sqlite://``, ``postgresql+psycopg://``, each request's transaction on a worker thread, as
the gateway does). SQLite runs in WAL mode with synchronous=NORMAL, like the gateway, and the
garbage collector is set as the gateway sets it once started (``gateway/api/heap.py``).

Run: python -m uvicorn exchange_floor_app:create_app --factory --app-dir bench ...
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fhir.resources.R4B import get_fhir_model_class
from floor_app import NO_TELEMETRY, THREADS, is_async, make_async_engine, make_sync_engine
from pydantic import ValidationError
from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
)

from gateway.api.heap import settle_after_startup

FHIR_JSON = "application/fhir+json"

metadata = MetaData()
resources = Table(
    "floor_exchange_resources",
    metadata,
    Column("res_id", String(64), primary_key=True),
    Column("res_type", String(64), nullable=False),
    Column("content", LargeBinary, nullable=False),
)
documents = Table(
    "floor_documents",
    metadata,
    Column("doc_id", String(64), primary_key=True),
    Column("content_type", String(255), nullable=False),
    Column("data", LargeBinary, nullable=False),
)
INSERT_RESOURCES = insert(resources)
INSERT_DOCUMENTS = insert(documents)
SELECT_DOCUMENT = select(documents.c.content_type, documents.c.data).where(
    documents.c.doc_id == bindparam("doc_id")
)


class _Store:
    """One transaction per submission, one SELECT per retrieve; async or sync drivers."""

    def __init__(self, url: str) -> None:
        self.async_ = is_async(url)
        if self.async_:
            self.engine = make_async_engine(url)
        else:
            self.engine = make_sync_engine(url)
            self.executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="floor-db")

    async def _thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        if self.async_:
            async with self.engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        else:
            await self._thread(metadata.create_all, self.engine)

    def _insert(self, rows: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(INSERT_RESOURCES, rows)
            if docs:
                conn.execute(INSERT_DOCUMENTS, docs)

    def _document(self, doc_id: str) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(SELECT_DOCUMENT, {"doc_id": doc_id}).first()

    async def insert(self, rows: list[dict[str, Any]], docs: list[dict[str, Any]]) -> None:
        if not self.async_:
            await self._thread(self._insert, rows, docs)
            return
        async with self.engine.begin() as conn:
            await conn.execute(INSERT_RESOURCES, rows)
            if docs:
                await conn.execute(INSERT_DOCUMENTS, docs)

    async def document(self, doc_id: str) -> Any:
        if not self.async_:
            return await self._thread(self._document, doc_id)
        async with self.engine.connect() as conn:
            return (await conn.execute(SELECT_DOCUMENT, {"doc_id": doc_id})).first()

    async def stop(self) -> None:
        if self.async_:
            await self.engine.dispose()
        else:
            await self._thread(self.engine.dispose)
            self.executor.shutdown(wait=False)


def create_app() -> FastAPI:
    url = os.environ["FLOOR_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = _Store(url)
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

    @app.post("/fhir")
    async def provide(request: Request) -> Response:
        body = await request.body()
        rows: list[dict[str, Any]] = []
        docs: list[dict[str, Any]] = []
        answers: list[dict[str, Any]] = []
        try:
            for entry in orjson.loads(body)["entry"]:
                resource = entry["resource"]
                res_type = resource["resourceType"]
                model = get_fhir_model_class(res_type).model_validate(resource)
                res_id = str(uuid.uuid4())
                if res_type == "Binary":  # the model decoded the base64 content already
                    docs.append(
                        {"doc_id": res_id, "content_type": model.contentType, "data": model.data}
                    )
                else:
                    rows.append(
                        {"res_id": res_id, "res_type": res_type, "content": orjson.dumps(resource)}
                    )
                answers.append(
                    {"response": {"status": "201 Created", "location": f"{res_type}/{res_id}"}}
                )
        except (ValidationError, ValueError, KeyError, TypeError) as exc:
            return Response(str(exc)[:500].encode(), status_code=400)
        await request.app.state.store.insert(rows, docs)
        return Response(
            orjson.dumps(
                {"resourceType": "Bundle", "type": "transaction-response", "entry": answers}
            ),
            media_type=FHIR_JSON,
        )

    @app.get("/fhir/Binary/{doc_id}")
    async def retrieve(request: Request, doc_id: str) -> Response:
        row = await request.app.state.store.document(doc_id)
        if row is None:
            return Response(b"", status_code=404)
        return Response(bytes(row.data), media_type=row.content_type)

    return app


def document_ids(url: str, limit: int) -> list[str]:
    """Ids of stored documents (up to ``limit``), read directly: what the retrieves ask for."""
    sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
    engine = make_sync_engine(sync_url)
    try:
        with engine.connect() as conn:
            return [str(r[0]) for r in conn.execute(select(documents.c.doc_id).limit(limit))]
    finally:
        engine.dispose()
