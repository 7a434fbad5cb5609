"""The audit log as DPOs and the operator use it: search, read, reports, anomaly flags,
verification and purge. Each use of the log is itself audited (kind ``audit-log``).

Only a person with the ``dpo`` role reads the log, and only what concerns its own organisation
(see ``gateway.audit.log``); the operator at the console reads all of it. AuditEvents are written
by the gateway alone: the API refuses to create, change or delete them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from sqlalchemy.engine import Connection

from gateway.audit import log
from gateway.audit.log import AuditQuery, Flag, Thresholds
from gateway.audit.purge import PurgeResult, purge
from gateway.audit.scope import Interaction, scope_of
from gateway.audit.verify import Verification, verify
from gateway.context import RequestContext
from gateway.errors import AuditUnavailable, BadRequest, Forbidden, NotFound
from gateway.fhir.bundles import BundleEntry, bundle_bytes, page_url
from gateway.fhir.dates import date_range
from gateway.fhir.dutch_identifiers import BSN, is_valid_bsn, normalized_system
from gateway.fhir.search import non_negative
from gateway.service.resources import ResourceService

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 1000
_DATE_PREFIXES = ("eq", "ge", "gt", "le", "lt")


@dataclass(frozen=True)
class Report:
    media_type: str
    body: bytes


class AuditLogService:
    def __init__(self, service: ResourceService, thresholds: Thresholds = Thresholds()) -> None:
        self.service = service
        self.thresholds = thresholds

    # -- FHIR API ---------------------------------------------------------------------------

    async def search(self, ctx: RequestContext, params: list[tuple[str, str]]) -> bytes:
        query, count, before = self._search_params(params)
        interaction = self._interaction("AuditEvent", params)

        def work(conn: Connection) -> bytes:
            holder = self._note(conn, ctx, query)
            rows = log.events(conn, query, holder, limit=count + 1, before_seq=before)
            page, more = rows[:count], len(rows) > count
            kept = [(k, v) for k, v in params if k not in ("_cursor", "_format")]
            links = [("self", page_url(f"{ctx.base_url}/AuditEvent", params))]
            if more:
                following = [*kept, ("_cursor", str(page[-1].seq))]
                links.append(("next", page_url(f"{ctx.base_url}/AuditEvent", following)))
            return bundle_bytes(
                "searchset",
                (
                    BundleEntry(
                        f"{ctx.base_url}/AuditEvent/{row.event_id}", bytes(row.content), "match"
                    )
                    for row in page
                ),
                links=links,
                timestamp_us=time.time_ns() // 1000,
            )

        return await self._read(ctx, work, interaction)

    async def read(self, ctx: RequestContext, event_id: str) -> tuple[bytes, int]:
        """One AuditEvent the actor may read, with the moment it was recorded."""
        interaction = Interaction("audit-log", f"AuditEvent/{event_id[:64]}")

        def work(conn: Connection) -> tuple[bytes, int]:
            holder = self._note(conn, ctx, AuditQuery())
            row = log.event_by_id(conn, event_id, holder)
            if row is None:
                raise NotFound(f"AuditEvent/{event_id[:64]} is not known")
            return bytes(row.content), int(row.recorded_us)

        return await self._read(ctx, work, interaction)

    # -- reports ----------------------------------------------------------------------------

    async def report(self, ctx: RequestContext, query: AuditQuery, fmt: str) -> Report:
        """The access report (NEN 7513) of the events ``query`` selects, oldest first."""
        if fmt not in ("csv", "json", "fhir"):
            raise BadRequest(f"format '{fmt}' is not one of csv, json, fhir")
        interaction = Interaction(
            "audit-log", "AuditEvent", query=f"report {_describe(query)} format={fmt}"
        )

        def work(conn: Connection) -> Report:
            holder = self._note(conn, ctx, query)
            # By the time each record states: reads recorded at once enter the chain in the
            # order they reach its group commit, which may differ by a moment.
            rows = sorted(log.events(conn, query, holder), key=lambda r: (r.recorded_us, r.seq))
            if fmt == "csv":
                return Report("text/csv; charset=utf-8", log.report_csv(rows).encode())
            if fmt == "json":
                flags = log.anomalies(rows, self.thresholds)
                return Report("application/json", log.report_json(rows, flags))
            body = log.report_bundle(rows, ctx.base_url, time.time_ns() // 1000)
            return Report("application/fhir+json", body)

        return await self._read(ctx, work, interaction)

    async def anomalies(self, ctx: RequestContext, query: AuditQuery) -> list[Flag]:
        interaction = Interaction("audit-log", "AuditEvent", query=f"anomalies {_describe(query)}")

        def work(conn: Connection) -> list[Flag]:
            holder = self._note(conn, ctx, query)
            return log.anomalies(log.events(conn, query, holder), self.thresholds)

        return await self._read(ctx, work, interaction)

    # -- integrity --------------------------------------------------------------------------

    async def verify(self, ctx: RequestContext) -> Verification:
        """Check the whole chain (DPOs and the operator)."""
        interaction = Interaction("audit-log", "AuditEvent", query="verify")

        def work(conn: Connection) -> Verification:
            self._note(conn, ctx, AuditQuery())
            return verify(conn, self.service.audit.signer)

        try:
            return await self._read(ctx, work, interaction)
        except AuditUnavailable:
            # A damaged chain can refuse the record of its own verification; the finding is
            # then what the operator needs (and explains the failure), so it is still given.
            found = await self.service.db.read(lambda c: verify(c, self.service.audit.signer))
            if found.intact:
                raise
            return found

    async def purge(self, ctx: RequestContext, before: datetime) -> PurgeResult:
        """Remove the records older than ``before`` (the operator only, never within the
        retention period); the chain stays verifiable from a signed anchor."""
        if not (ctx.actor.is_local and ctx.actor.organization is None):
            raise Forbidden("Only the gateway's operator purges the audit log")
        before_us = int(before.timestamp() * 1_000_000)
        interaction = Interaction(
            "audit-log", "AuditEvent", query=f"purge before={before.isoformat()}"
        )
        years = self.service.settings.audit_retention_years
        trail = self.service.audit

        def work(conn: Connection) -> PurgeResult:
            return purge(conn, trail.signer, before_us, years)

        return await self.service.in_write(ctx, work, interaction)

    # -- helpers ----------------------------------------------------------------------------

    async def _read(
        self, ctx: RequestContext, work: Callable[[Connection], T], interaction: Interaction
    ) -> T:
        await self.service.precheck(ctx, interaction, lambda: holder_of(ctx))
        return await self.service.in_read(ctx, work, interaction)

    @staticmethod
    def _note(conn: Connection, ctx: RequestContext, query: AuditQuery) -> str | None:
        scope = scope_of(conn)
        if scope is not None and query.patient:
            scope.named_patient = query.patient
        return holder_of(ctx)

    @staticmethod
    def _interaction(target: str, params: list[tuple[str, str]]) -> Interaction:
        shown = [(k, v) for k, v in params if k != "_format"]
        return Interaction("audit-log", target, query=f"GET {target}?{urlencode(shown)}")

    def _search_params(self, params: list[tuple[str, str]]) -> tuple[AuditQuery, int, int | None]:
        query = AuditQuery()
        count, before = DEFAULT_PAGE, None
        for name, value in params:
            if name == "_count":
                count = max(1, min(MAX_PAGE, non_negative(name, value)))
            elif name == "_cursor":
                before = non_negative(name, value)
            elif name == "_format":
                continue
            else:
                query = apply_param(query, name, value)
        return query, count, before


def holder_of(ctx: RequestContext) -> str | None:
    """Whose part of the log the actor may read (None: all of it, the operator)."""
    actor = ctx.actor
    if actor.is_local and actor.organization is None:
        return None
    if actor.kind == "user" and "dpo" in actor.roles and actor.organization:
        return actor.organization
    raise Forbidden("Only a data-protection officer (role dpo) reads the audit log")


def audit_query(params: list[tuple[str, str]]) -> AuditQuery:
    """The query that report parameters (``patient``, ``from``, ``to``, ``org`` …) describe."""
    query = AuditQuery()
    for name, value in params:
        query = apply_param(query, name, value)
    return query


def apply_param(query: AuditQuery, name: str, value: str) -> AuditQuery:
    """``query`` narrowed by one search (or report) parameter."""
    match name:
        case "patient" | "patient.identifier":
            return replace(query, patient=_bsn(value))
        case "agent" | "user":
            return replace(query, agent=value.split("|")[-1])
        case "agent-organization" | "org":
            return replace(query, organization=value.split("|")[-1])
        case "date":
            return _dated(query, value)
        case "from":
            return replace(query, since_us=_day(value, name)[0])
        case "to":
            return replace(query, until_us=_day(value, name)[1] + 1)
        case "type" | "subtype":
            kinds = log.kinds_of_code(value.split("|")[-1])
            return replace(query, kinds=kinds if query.kinds is None else query.kinds & kinds)
        case "outcome":
            return replace(query, outcome=value.split("|")[-1])
        case "action":
            return replace(query, action=value)
        case "denials":
            return replace(query, denials=_flag(name, value))
        case "emergencies":
            return replace(query, emergencies=_flag(name, value))
    raise BadRequest(f"Unknown AuditEvent search parameter '{name}'", code="not-supported")


def _bsn(value: str) -> str:
    system, _, code = value.rpartition("|")
    if system and normalized_system(system) != BSN:
        raise BadRequest(f"'{value}' is not a BSN (system {BSN})", code="value")
    if not is_valid_bsn(code):
        raise BadRequest(f"'{code}' is not a valid BSN (elfproef)", code="value")
    return code


def _dated(query: AuditQuery, value: str) -> AuditQuery:
    prefix = value[:2] if value[:2] in _DATE_PREFIXES else "eq"
    start, end = _day(value[2:] if value[:2] in _DATE_PREFIXES else value, "date")
    end += 1  # exclusive
    if prefix == "eq":
        return replace(query, since_us=start, until_us=end)
    if prefix in ("ge", "gt"):
        return replace(query, since_us=end if prefix == "gt" else start)
    return replace(query, until_us=start if prefix == "lt" else end)


def _day(value: str, name: str) -> tuple[int, int]:
    found = date_range(value)
    if found is None:
        raise BadRequest(f"{name} '{value}' is not a date such as 2026-01-31", code="value")
    return found


def _flag(name: str, value: str) -> bool:
    if value not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false", code="value")
    return value == "true"


def _describe(query: AuditQuery) -> str:
    shown: dict[str, Any] = {k: v for k, v in vars(query).items() if v not in (None, False)}
    if "kinds" in shown:
        shown["kinds"] = ",".join(sorted(shown["kinds"]))
    return " ".join(f"{k}={v}" for k, v in shown.items())
