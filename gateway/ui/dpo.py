"""The data-protection officer's pages: the audit chain and flags, the audit log, the NEN 7513
access report of one patient, and a patient's consents with who may see what.

Everything is read through the service layer, which limits a DPO to what concerns its own
organisation and records every use of the log. A BSN is only ever posted, never put in a URL:
URLs end up in logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import Response

from consent import Agreement, category_title
from gateway.agreements import EXPIRY_WARNING_DAYS, list_agreements
from gateway.audit.codes import KINDS, SUCCESS
from gateway.audit.log import AuditQuery
from gateway.fhir.dutch_identifiers import BSN as BSN_SYSTEM
from gateway.fhir.dutch_identifiers import is_valid_bsn
from gateway.fhir.search import whole_number
from gateway.organizations import list_organizations
from gateway.service.audit_log import MAX_PAGE, audit_query
from gateway.ui.web import AMSTERDAM, Page, iso_date, page

router = APIRouter()
REVIEW_DAYS = 30  # how far back the overview looks for flags and emergencies
PAGE_SIZE = 50
OUTCOMES = ("any", "success", "failure")
_KIND_OF_SUBTYPE = {s.code: name for name, kind in KINDS.items() for s in kind.subtypes}


# -- the overview ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgreementRow:
    agreement: Agreement
    state: str  # "", "expires_soon" or "expired": the key of the warning shown


@router.get("/ui/dpo")
async def overview(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("dpo")
    return await _overview(current, verify=False)


@router.post("/ui/dpo/verify")
async def verify(current: Annotated[Page, Depends(page)]) -> Response:
    """Check the whole chain: on request, since it reads every record there is."""
    current.require("dpo")
    await current.form()
    return await _overview(current, verify=True)


async def _overview(current: Page, *, verify: bool) -> Response:
    session = current.signed_in
    ctx = current.context()
    audit_log = current.service.audit_log
    today = datetime.now(AMSTERDAM).date()
    since = (today - timedelta(days=REVIEW_DAYS)).isoformat()
    verification = await audit_log.verify(ctx) if verify else None
    flags = await audit_log.anomalies(ctx, audit_query([("from", since)]))
    # A search, not the report: the declaration's reason is among the event's details.
    params = [("emergencies", "true"), ("from", since), ("_count", str(MAX_PAGE))]
    emergencies, more = _events(await audit_log.search(ctx, params))
    agreements = [
        AgreementRow(a, _expiry(a, today))
        for a in await list_agreements(current.service)
        if session.org_ura in a.parties
    ]
    agreements.sort(key=lambda row: (row.agreement.valid_to or date.max, row.agreement.id))
    return current.render(
        "dpo_overview.html",
        verification=verification,
        flags=[f.as_dict() for f in flags],
        # A flag names its agent by id; the events give the names of those that acted lately.
        agents={line["user"]: line["user_name"] for line in emergencies},
        declarations=[line for line in emergencies if line["event"] == "emergency"],
        emergency_accesses=sum(1 for line in emergencies if line["event"] != "emergency"),
        more_emergencies=more is not None,
        agreements=agreements,
        names=await _names(current),
        days=REVIEW_DAYS,
    )


def _expiry(agreement: Agreement, today: date) -> str:
    if agreement.status == "ended" or (agreement.valid_to and agreement.valid_to < today):
        return "expired"
    if agreement.expires_within(EXPIRY_WARNING_DAYS, today):
        return "expires_soon"
    return ""


# -- the audit log --------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    """The filters that carry no patient data, so that they may travel in a GET query."""

    agent: str
    kind: str
    outcome: str
    start: str
    end: str
    cursor: str

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> AuditFilters:
        kind, outcome, cursor = (
            _value(values, "type"),
            _value(values, "outcome"),
            _value(values, "cursor"),
        )
        return cls(
            _value(values, "agent", 200),
            kind if kind in KINDS else "",
            outcome if outcome in OUTCOMES else "any",
            iso_date(_value(values, "from")),
            iso_date(_value(values, "to")),
            cursor if whole_number(cursor) is not None else "",
        )

    def params(self) -> list[tuple[str, str]]:
        """The AuditEvent search parameters (gateway.service.audit_log.apply_param)."""
        params = [("_count", str(PAGE_SIZE))]
        for name, value in (
            ("agent", self.agent),
            ("type", self.kind),
            ("from", self.start),
            ("to", self.end),
            ("_cursor", self.cursor),
        ):
            if value:
                params.append((name, value))
        if self.outcome == "success":
            params.append(("outcome", SUCCESS))
        elif self.outcome == "failure":
            params.append(("denials", "true"))
        return params

    def query(self, cursor: str) -> str:
        """The GET query of the next page."""
        shown = {"agent": self.agent, "type": self.kind, "outcome": self.outcome}
        shown |= {"from": self.start, "to": self.end, "cursor": cursor}
        return urlencode({k: v for k, v in shown.items() if v and v != "any"})


@router.get("/ui/dpo/audit")
async def audit(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("dpo")
    return await _audit_page(current, AuditFilters.of(current.request.query_params), "")


@router.post("/ui/dpo/audit")
async def audit_of_patient(current: Annotated[Page, Depends(page)]) -> Response:
    """The same search narrowed to one patient: a POST, so that the BSN stays out of URLs."""
    current.require("dpo")
    form = await current.form()
    filters, bsn = AuditFilters.of(form), _bsn(form)
    if not is_valid_bsn(bsn):
        return current.render(
            "dpo_audit.html",
            status=422,
            filters=filters,
            bsn=bsn,
            lines=None,
            next_cursor=None,
            next_query=None,
            kinds=sorted(KINDS),
            names={},
            message=current.t("invalid_bsn"),
        )
    return await _audit_page(current, filters, bsn)


async def _audit_page(current: Page, filters: AuditFilters, bsn: str) -> Response:
    params = filters.params() + ([("patient", bsn)] if bsn else [])
    lines, next_cursor = _events(await current.service.audit_log.search(current.context(), params))
    return current.render(
        "dpo_audit.html",
        filters=filters,
        bsn=bsn,
        lines=lines,
        next_cursor=next_cursor,
        next_query=filters.query(next_cursor) if next_cursor else None,
        kinds=sorted(KINDS),
        names=await _names(current),
        message=None,
    )


def _events(body: bytes) -> tuple[list[dict[str, Any]], str | None]:
    """The lines of a searchset of AuditEvents, and the cursor of its next page if any."""
    bundle = orjson.loads(body)
    lines = [event_line(e.get("resource") or {}) for e in bundle.get("entry") or []]
    following = next(
        (link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None
    )
    if following is None:
        return lines, None
    return lines, parse_qs(urlsplit(following).query).get("_cursor", [None])[0]


def event_line(event: dict[str, Any]) -> dict[str, Any]:
    """An AuditEvent as a line with the access report's keys (gateway.audit.log.report_line),
    so that the audit search and the report show the same columns."""
    agents: list[dict[str, Any]] = event.get("agent") or []
    requestor: dict[str, Any] = next((a for a in agents if a.get("requestor")), {})
    organisation = next(
        (_identifier(a.get("who")) for a in agents if _code(a.get("type")) == "PROV"), ""
    )
    patient, query = "", ""
    data: list[str] = []
    consents: list[str] = []
    basis: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for entity in event.get("entity") or []:
        role, kind = _code(entity.get("role")), _code(entity.get("type"))
        what = entity.get("what") or {}
        if role == "1":
            patient = _identifier(what)
        elif role == "4":
            data.append(str(what.get("reference") or ""))
        elif role == "24":
            query = str(entity.get("description") or "")
        elif kind == "access-basis":
            basis = {d.get("type"): d.get("valueString") for d in entity.get("detail") or []}
        elif kind == "details":
            details = {d.get("type"): d.get("valueString") for d in entity.get("detail") or []}
        elif kind == "Consent":
            consents.append(str(what.get("reference") or ""))
    subtype = _code((event.get("subtype") or [{}])[0])
    kind_name = _KIND_OF_SUBTYPE.get(subtype, subtype)
    purposes = {
        c.get("code") for p in event.get("purposeOfEvent") or [] for c in p.get("coding") or []
    }
    return {
        "when": event.get("recorded"),
        "event": kind_name,
        "action": event.get("action", ""),
        "outcome": event.get("outcome", ""),
        "user": _identifier(requestor.get("who")),
        "user_name": requestor.get("name", ""),
        "organization": organisation,
        "role": _code((requestor.get("role") or [{}])[0]),
        "patient": patient,
        "data": " ".join(data),
        "query": query,
        "basis": basis.get("kind", ""),
        "consents": " ".join(consents),
        "agreement": basis.get("agreement", ""),
        "emergency": "BTG" in purposes or kind_name == "emergency",
        "emergency_reason": basis.get("emergency-reason") or details.get("reason", ""),
    }


# -- the patient access report (NEN 7513) ----------------------------------------------------


@router.get("/ui/dpo/report")
async def report_form(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("dpo")
    return current.render("dpo_report.html", bsn="", start="", end="", lines=None, message=None)


@router.post("/ui/dpo/report")
async def report(current: Annotated[Page, Depends(page)]) -> Response:
    """Who saw this patient's data, when and on which basis: as a table, or as a CSV file."""
    current.require("dpo")
    form = await current.form()
    bsn, start, end = _bsn(form), iso_date(_value(form, "from")), iso_date(_value(form, "to"))
    if not is_valid_bsn(bsn):
        return current.render(
            "dpo_report.html",
            status=422,
            bsn=bsn,
            start=start,
            end=end,
            lines=None,
            message=current.t("invalid_bsn"),
        )
    params = [("patient", bsn)] + [(k, v) for k, v in (("from", start), ("to", end)) if v]
    query = audit_query(params)
    if _value(form, "format") == "csv":
        found = await current.service.audit_log.report(current.context(), query, "csv")
        day = datetime.now(AMSTERDAM).date().isoformat()
        return Response(
            found.body,
            media_type=found.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="inzage-{day}.csv"',
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
            },
        )
    return current.render(
        "dpo_report.html",
        bsn=bsn,
        start=start,
        end=end,
        lines=await _report_lines(current, query),
        names=await _names(current),
        message=None,
    )


async def _report_lines(current: Page, query: AuditQuery) -> list[dict[str, Any]]:
    """The report's lines (gateway.audit.log.report_line), oldest first."""
    found = await current.service.audit_log.report(current.context(), query, "json")
    return list(orjson.loads(found.body)["events"])


# -- a patient's consents and who may see what ------------------------------------------------


@dataclass(frozen=True)
class ConsentRule:
    type: str  # permit or deny
    recipients: tuple[str, ...]  # URAs or organisation types; empty: the whole network
    categories: tuple[str, ...]  # empty: all data
    start: str | None
    end: str | None


@dataclass(frozen=True)
class ConsentView:
    id: str
    status: str
    recorded: str | None
    rules: tuple[ConsentRule, ...]  # the root provision, then its exceptions


@router.get("/ui/dpo/consents")
async def consents_form(current: Annotated[Page, Depends(page)]) -> Response:
    current.require("dpo")
    return current.render("dpo_consents.html", bsn="", consents=None, access=None, message=None)


@router.post("/ui/dpo/consents")
async def consents(current: Annotated[Page, Depends(page)]) -> Response:
    session = current.require("dpo")
    form = await current.form()
    bsn = _bsn(form)
    if not is_valid_bsn(bsn):
        return current.render(
            "dpo_consents.html",
            status=422,
            bsn=bsn,
            consents=None,
            access=None,
            message=current.t("invalid_bsn"),
        )
    ctx = current.context()
    own = session.org_ura
    patients = await _owned(current, "Patient", [("identifier", f"{BSN_SYSTEM}|{bsn}")], own)
    held = await _owned(
        current,
        "Consent",
        [("patient.identifier", f"{BSN_SYSTEM}|{bsn}"), ("_count", "200")],
        own,
    )
    access = []
    for patient in patients:
        access += await current.service.access_overview(ctx, str(patient["id"]))
    return current.render(
        "dpo_consents.html",
        bsn=bsn,
        consents=sorted(
            (consent_view(c) for c in held), key=lambda c: c.recorded or "", reverse=True
        ),
        access=access,
        category_title=category_title,
        names=await _names(current),
        message=None if patients else current.t("no_own_patient"),
    )


async def _owned(
    current: Page, res_type: str, params: list[tuple[str, str]], own: str
) -> list[dict[str, Any]]:
    """The matches that ``own`` holds (what partners hold is theirs to report on)."""
    body, owners = await current.service.search_with_owners(current.context(), res_type, params)
    found = [entry.get("resource") or {} for entry in orjson.loads(body).get("entry") or []]
    return [
        r
        for r in found
        if r.get("resourceType") == res_type and owners.get(str(r.get("id"))) == own
    ]


def consent_view(resource: dict[str, Any]) -> ConsentView:
    """What a DPO checks of a Consent: its status, when it was recorded, and its rules."""
    root = resource.get("provision") or {}
    rules = [_rule(root)] + [_rule(child) for child in root.get("provision") or []]
    return ConsentView(
        str(resource.get("id")),
        str(resource.get("status") or ""),
        resource.get("dateTime"),
        tuple(rules),
    )


def _rule(provision: dict[str, Any]) -> ConsentRule:
    recipients = []
    for actor in provision.get("actor") or []:
        if _code(actor.get("role")) != "PRCP":
            continue
        reference = actor.get("reference") or {}
        recipients.append(
            _identifier(reference) or str(reference.get("reference") or "").lstrip("#")
        )
    categories = [str(c.get("code")) for c in provision.get("class") or [] if c.get("code")]
    categories += [_code(c) for c in provision.get("code") or [] if _code(c)]
    period = provision.get("period") or {}
    return ConsentRule(
        str(provision.get("type") or "permit"),
        tuple(recipients),
        tuple(categories),
        period.get("start"),
        period.get("end"),
    )


# -- helpers --------------------------------------------------------------------------------


async def _names(current: Page) -> dict[str, str]:
    return {o.ura: o.name for o in await list_organizations(current.service)}


def _value(values: Mapping[str, Any], name: str, limit: int = 32) -> str:
    value = values.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _bsn(values: Mapping[str, Any]) -> str:
    return _value(values, "bsn", 20).replace(" ", "").replace(".", "")


def _code(concept: Any) -> str:
    """The first code of a Coding or CodeableConcept."""
    if not isinstance(concept, dict):
        return ""
    if "code" in concept:
        return str(concept["code"])
    codings = concept.get("coding") or [{}]
    return str(codings[0].get("code") or "")


def _identifier(reference: Any) -> str:
    if not isinstance(reference, dict):
        return ""
    return str((reference.get("identifier") or {}).get("value") or "")
