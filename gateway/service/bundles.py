"""``transaction`` (all or nothing) and ``batch`` (independent entries) Bundles."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlalchemy.engine import Connection

from gateway.audit.scope import Interaction
from gateway.content import PreparedBlob
from gateway.context import RequestContext
from gateway.errors import BadRequest, GatewayError
from gateway.fhir.bundles import BundleEntry, bundle_bytes
from gateway.fhir.references import full_url_aliases, local_references, rewrite_references
from gateway.fhir.validation import validate_resource
from gateway.service.resources import ResourceResult, ResourceService, check_id, check_type
from gateway.store.keys import new_key
from gateway.store.repository import ConsentColumns, reserve_rids

log = logging.getLogger("zorgbrug.bundles")
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class TransactionEntry:
    """One entry of a transaction or batch, as parsed and as processed."""

    position: int
    method: str
    res_type: str
    res_id: str | None
    query: str | None
    history_version: str | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    result: ResourceResult | None = None
    body: bytes | None = None
    outcome: dict[str, Any] | None = field(default=None)  # the error of a failed batch entry
    note: dict[str, Any] | None = None  # an informational OperationOutcome for the response
    done: bool = False  # handled by the caller before the transaction ran (res_id is set)
    sealed: tuple[PreparedBlob, ...] = ()  # its content, encrypted before the transaction
    # What consent decides on where the resource does not tell (a Binary: its document's).
    consent: ConsentColumns | None = None


class BundleProcessor:
    """Runs transaction and batch Bundles through the resource service."""

    def __init__(self, service: ResourceService) -> None:
        self.service = service

    async def process(
        self, ctx: RequestContext, bundle: Any, interaction: Interaction | None = None
    ) -> bytes:
        """The transaction-response or batch-response for a posted Bundle; a transaction is
        recorded as ``interaction`` when given (an administrative change at the console)."""
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base must carry a Bundle", expression=["resourceType"])
        kind = bundle.get("type")
        if kind not in ("transaction", "batch"):
            raise BadRequest(
                f"Bundle.type must be transaction or batch, not '{kind}'",
                expression=["Bundle.type"],
            )
        raw_entries = bundle.get("entry") or []
        if not isinstance(raw_entries, list):
            raise BadRequest("Bundle.entry must be a list", expression=["Bundle.entry"])
        if kind == "batch":
            return await self._batch(ctx, raw_entries)
        interaction = interaction or Interaction(
            "transaction", details=(("entries", str(len(raw_entries))),)
        )
        entries = await self.service.precheck(
            ctx,
            interaction,
            lambda: _check_local_references(
                [self.parse_entry(ctx, i, e) for i, e in enumerate(raw_entries)]
            ),
        )
        await self.service.in_write(
            ctx, lambda conn: self.run_transaction(conn, ctx, entries), interaction
        )
        return self.response("transaction-response", ctx, entries)

    # -- transaction -----------------------------------------------------------------------

    def run_transaction(
        self, conn: Connection, ctx: RequestContext, entries: list[TransactionEntry]
    ) -> None:
        """Execute the entries in the caller's transaction: deletes, creates, updates, reads,
        with ``urn:uuid:`` and other full URLs rewritten to the ids they get."""
        seen: set[str] = set()
        for entry in entries:
            if entry.method not in ("PUT", "DELETE"):
                continue
            if entry.res_id:
                identity = f"{entry.res_type}/{entry.res_id}"
            elif entry.query is not None:  # one condition names one resource
                query = urlencode(sorted(parse_qsl(entry.query, keep_blank_values=True)))
                identity = f"{entry.res_type}?{query}"
            else:
                continue
            if identity in seen:
                raise BadRequest(f"Bundle.entry[{entry.position}]: {identity} appears twice")
            seen.add(identity)
        service = self.service
        reserve_rids(conn, sum(1 for e in entries if e.method == "POST" and not e.done))
        mapping: dict[str, str] = {}
        matched: set[int] = set()
        for entry in entries:
            if entry.done:
                matched.add(entry.position)
            with _entry_errors(entry.position):
                if entry.done:
                    pass
                elif entry.method == "POST":
                    if entry.if_none_exist:
                        found = service.conditional_match(
                            conn, ctx, entry.res_type, entry.if_none_exist
                        )
                        if found is not None:
                            entry.result = service.shown(conn, 200, found)
                            entry.res_id = found.res_id
                            matched.add(entry.position)
                    entry.res_id = entry.res_id or new_key()
                elif entry.method == "PUT" and entry.query is not None:
                    new_id = new_key()
                    found = service.match_or_claim(conn, ctx, entry.res_type, entry.query, new_id)
                    entry.res_id = found.res_id if found else new_id
                    if entry.resource is not None:
                        entry.resource["id"] = entry.res_id
                if (
                    entry.full_url
                    and entry.res_id
                    and (entry.done or entry.method in ("POST", "PUT"))
                ):
                    for alias in full_url_aliases(entry.full_url):
                        mapping[alias] = f"{entry.res_type}/{entry.res_id}"
        for entry in entries:
            if entry.resource is not None:
                rewrite_references(entry.resource, mapping)
        for entry in sorted(entries, key=lambda e: (_ORDER.get(e.method, 9), e.position)):
            if entry.position in matched:
                continue
            with _entry_errors(entry.position):
                self._execute(conn, ctx, entry)

    def _execute(self, conn: Connection, ctx: RequestContext, entry: TransactionEntry) -> None:
        service = self.service
        if entry.method == "POST":
            assert entry.resource is not None
            entry.result = service.create_in(
                conn,
                ctx,
                entry.res_type,
                entry.resource,
                if_none_exist=entry.if_none_exist,
                res_id=entry.res_id,
                assigned=True,  # POST entries get their ids from us, never from the client
                sealed=entry.sealed,
                consent=entry.consent,
            )
        elif entry.method == "PUT" and entry.res_id is None:  # a batch's conditional update
            assert entry.resource is not None and entry.query is not None
            entry.result = service.update_conditional_in(
                conn, ctx, entry.res_type, entry.query, entry.resource, if_match=entry.if_match
            )
        elif entry.method == "PUT":
            assert entry.resource is not None and entry.res_id is not None
            entry.result = service.update_in(
                conn, ctx, entry.res_type, entry.res_id, entry.resource, if_match=entry.if_match
            )
        elif entry.method == "DELETE" and entry.res_id is None:
            deleted = service.delete_conditional_in(conn, ctx, entry.res_type, entry.query or "")
            entry.result = deleted or ResourceResult(204, entry.res_type, "", 0, 0, None)
        elif entry.method == "DELETE":
            assert entry.res_id is not None
            entry.result = service.delete_in(conn, ctx, entry.res_type, entry.res_id)
        elif entry.res_id is not None and entry.history_version is None:
            entry.result = service.read_in(conn, ctx, entry.res_type, entry.res_id)
        elif entry.res_id is not None:
            entry.result = service.vread_in(
                conn, ctx, entry.res_type, entry.res_id, entry.history_version or ""
            )
        else:
            query = service.parse_query(
                ctx, entry.res_type, parse_qsl(entry.query or ""), strict=ctx.strict_handling
            )
            entry.body = service.search_in(conn, ctx, query)

    # -- batch -----------------------------------------------------------------------------

    async def _batch(self, ctx: RequestContext, raw_entries: list[Any]) -> bytes:
        entries: list[TransactionEntry] = []
        for position, raw in enumerate(raw_entries):
            try:
                entry = await self.service.precheck(
                    ctx,
                    Interaction("batch", details=(("entry", str(position)),)),
                    functools.partial(self.parse_entry, ctx, position, raw),
                )
                await self._batch_entry(ctx, entry)
            except Exception as error:  # entries stand alone: one failing stops no other
                if not isinstance(error, GatewayError):
                    log.error(
                        "batch entry %d of request %s failed",
                        position,
                        ctx.request_id,
                        exc_info=error,
                    )
                    error = GatewayError(
                        f"Internal error; quote request id {ctx.request_id} to the operator"
                    )
                entry = TransactionEntry(
                    position, "GET", "", None, None, None, None, None, None, None
                )
                entry.outcome = error.outcome()
                entry.result = ResourceResult(error.status, "", "", 0, 0, None)
            entries.append(entry)
        return self.response("batch-response", ctx, entries)

    async def _batch_entry(self, ctx: RequestContext, entry: TransactionEntry) -> None:
        service = self.service
        run = service.in_read if entry.method == "GET" else service.in_write
        await run(ctx, lambda conn: self._execute(conn, ctx, entry), entry_interaction(entry))

    # -- parsing and response --------------------------------------------------------------

    def parse_entry(self, ctx: RequestContext, position: int, raw: Any) -> TransactionEntry:
        """An entry of a posted Bundle, its resource validated (400/422 naming the entry)."""
        where = f"Bundle.entry[{position}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
            raise BadRequest(f"{where} has no request", expression=[f"{where}.request"])
        request = raw["request"]
        method = str(request.get("method", "")).upper()
        if method not in _ORDER:
            raise BadRequest(
                f"{where}.request.method '{method}' is not supported",
                expression=[f"{where}.request.method"],
                code="not-supported",
            )
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequest(f"{where}.request.url is missing", expression=[f"{where}.request.url"])
        with _entry_errors(position):  # the type's own check names no entry
            res_type, res_id, version, query = _parse_url(ctx, url, where)
        resource = raw.get("resource")
        if method in ("POST", "PUT"):
            try:
                validate_resource(resource, res_type)
            except GatewayError as error:
                raise _prefixed(error, where) from None
            if method == "POST" and res_id is not None:
                raise BadRequest(f"{where}: POST goes to the type, not to '{url}'")
            if method == "PUT" and res_id is None and query is None:
                raise BadRequest(f"{where}: PUT needs Type/id or a conditional Type?query")
            if method == "PUT" and res_id is not None:
                check_id(res_id)
        for name in ("ifNoneExist", "ifMatch"):
            if request.get(name) is not None and not isinstance(request[name], str):
                raise BadRequest(
                    f"{where}.request.{name} must be a string",
                    expression=[f"{where}.request.{name}"],
                )
        if version is not None and method in ("PUT", "DELETE"):
            raise BadRequest(
                f"{where}: {method} goes to the resource, not to one of its versions ('{url}')",
                expression=[f"{where}.request.url"],
            )
        full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
        return TransactionEntry(
            position,
            method,
            res_type,
            res_id,
            query,
            version,
            resource if method in ("POST", "PUT") else None,
            full_url,
            request.get("ifNoneExist"),
            request.get("ifMatch"),
        )

    def response(self, kind: str, ctx: RequestContext, entries: list[TransactionEntry]) -> bytes:
        """The transaction-response or batch-response Bundle, one entry per request entry."""
        out = []
        representation = ctx.return_preference in ("representation", "")
        for entry in sorted(entries, key=lambda e: e.position):
            result = entry.result
            if entry.outcome is not None and result is not None:
                out.append(
                    BundleEntry(
                        None,
                        None,
                        response={"status": str(result.status), "outcome": entry.outcome},
                    )
                )
                continue
            if entry.body is not None:
                out.append(BundleEntry(None, entry.body, response={"status": "200 OK"}))
                continue
            assert result is not None
            response: dict[str, Any] = {
                "status": _STATUS_TEXT.get(result.status, str(result.status))
            }
            if result.res_id:  # a conditional delete that matched nothing names no version
                response |= {"etag": result.etag, "lastModified": result.last_modified}
            if entry.method in ("POST", "PUT", "PATCH"):
                response["location"] = (
                    f"{result.res_type}/{result.res_id}/_history/{result.version}"
                )
            if entry.note is not None:
                response["outcome"] = entry.note
            show = entry.method == "GET" or (representation and entry.method != "DELETE")
            full_url = f"{ctx.base_url}/{result.res_type}/{result.res_id}"
            out.append(BundleEntry(full_url, result.content if show else None, response=response))
        return bundle_bytes(
            kind, out, bundle_id=str(uuid.uuid4()), timestamp_us=self.service.now_us()
        )


def _parse_url(
    ctx: RequestContext, url: str, where: str
) -> tuple[str, str | None, str | None, str | None]:
    if url.startswith(ctx.base_url + "/"):
        url = url[len(ctx.base_url) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise BadRequest(f"{where}.request.url '{url}' is not on this server")
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise BadRequest(f"{where}.request.url '{url}' names no resource type")
    res_type = segments[0]
    if res_type.startswith("$") or any(s.startswith("$") for s in segments[1:]):
        raise BadRequest(f"{where}: operation '{url}' is not supported", code="not-supported")
    check_type(res_type)
    res_id = segments[1] if len(segments) > 1 else None
    version = None
    if len(segments) == 4 and segments[2] == "_history":
        version = segments[3]
    elif len(segments) > 2:
        raise BadRequest(f"{where}.request.url '{url}' is not supported", code="not-supported")
    return res_type, res_id, version, parts.query if parts.query or res_id is None else None


@contextmanager
def _entry_errors(position: int) -> Iterator[None]:
    """Prefix an error with the entry it came from."""
    try:
        yield
    except GatewayError as error:
        raise _prefixed(error, f"Bundle.entry[{position}]") from None


def _prefixed(error: GatewayError, where: str) -> GatewayError:
    if error.diagnostics.startswith("Bundle.entry["):
        return error
    return error.prefixed(where, lambda expression: _within(where, expression))


def _check_local_references(entries: list[TransactionEntry]) -> list[TransactionEntry]:
    """A transaction's entries, once every fullUrl is its entry's alone and every reference
    to a ``urn:uuid:`` names an entry: otherwise one would be stored pointing nowhere, or at
    whichever entry came last."""
    first: dict[str, int] = {}
    for entry in entries:
        if entry.full_url is None:
            continue
        if entry.full_url in first:
            raise BadRequest(
                f"Bundle.entry[{entry.position}].fullUrl {entry.full_url} is that of "
                f"Bundle.entry[{first[entry.full_url]}] too",
                expression=[f"Bundle.entry[{entry.position}].fullUrl"],
            )
        first[entry.full_url] = entry.position
    known = {alias for url in first for alias in full_url_aliases(url)}
    for entry in entries:
        for path, value in local_references(entry.resource):
            if value not in known:
                where = f"Bundle.entry[{entry.position}].resource{path}"
                raise BadRequest(
                    f"{where}: '{value[:100]}' names no entry of the bundle", expression=[where]
                )
    return entries


def _within(where: str, expression: str) -> str:
    """An entry's resource's element as a path from the Bundle: ``Patient.identifier[0]`` of
    entry 1 is ``Bundle.entry[1].resource.identifier[0]``."""
    head, dot, rest = expression.partition(".")
    if not head[:1].isupper() or head == "Bundle":
        return expression
    return f"{where}.resource{dot}{rest}"


def entry_interaction(entry: TransactionEntry) -> Interaction:
    """A batch entry as audited: the interaction it is on its own."""
    target = "/".join(p for p in (entry.res_type, entry.res_id) if p) or None
    details = (("batch-entry", str(entry.position)),)
    if entry.method == "GET":
        if entry.res_id is None:
            query = f"GET {entry.res_type}?{entry.query or ''}"
            kind = "find-documents" if entry.res_type == "DocumentReference" else "search-type"
            return Interaction(kind, target, query=query, details=details)
        kind = "vread" if entry.history_version else "read"
        return Interaction(kind, target, details=details)
    kind = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(entry.method, "batch")
    condition = f"{entry.method} {entry.res_type}?{entry.query}" if entry.query else None
    return Interaction(kind, target, query=condition, details=details)
