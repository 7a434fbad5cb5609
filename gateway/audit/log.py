"""Reading the audit log: DPO searches, the NEN 7513 patient access report, anomaly flags.

Every function takes the organisation whose DPO asks (``holder``; None for the operator at the
console): a DPO sees the events of its own organisation's people and systems, the events about
its organisation's data, and the emergencies declared for patients its organisation treats. Of
what its own people were refused on another organisation's data it sees the attempt, not whose
data or patient it was (``as_seen_by``): the refusal must not tell what the 404 kept back.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import Select, and_, false, or_, select, true
from sqlalchemy.engine import Connection, Row

from gateway.audit import codes
from gateway.audit.codes import KINDS
from gateway.fhir.bundles import BundleEntry, bundle_bytes
from gateway.fhir.dates import instant
from gateway.store.schema import audit_events, resources


@dataclass(frozen=True)
class AuditQuery:
    """Which events: every field narrows; None/empty means any."""

    patient: str | None = None  # BSN
    agent: str | None = None  # the user name or client id
    organization: str | None = None  # the URA of the agent's organisation
    since_us: int | None = None  # inclusive
    until_us: int | None = None  # exclusive
    kinds: frozenset[str] | None = None  # keys of codes.KINDS
    outcome: str | None = None
    action: str | None = None
    denials: bool = False  # only refused or failed accesses
    emergencies: bool = False  # only emergency (break-the-glass) events


def kinds_of_code(code: str) -> frozenset[str]:
    """The kinds an AuditEvent type or subtype code (or our own kind name) stands for."""
    return frozenset(
        name
        for name, kind in KINDS.items()
        if code in (name, kind.type.code) or any(s.code == code for s in kind.subtypes)
    )


def statement(query: AuditQuery, holder: str | None) -> Select[Any]:
    """The events matching ``query`` that ``holder``'s DPO may read, newest first."""
    e = audit_events
    conditions: list[Any] = []
    if holder is not None:
        treated = select(resources.c.patient_key).where(
            resources.c.res_type == "Patient",
            resources.c.owner_org == holder,
            resources.c.deleted.is_(False),
            resources.c.patient_key.is_not(None),
        )
        # Another organisation's emergency about a patient it treats, which may open its
        # data; not what other organisations did with their own data (their DPOs' part).
        emergency_here = and_(
            e.c.kind == "emergency", e.c.custodian_org.is_(None), e.c.patient_key.in_(treated)
        )
        conditions.append(or_(e.c.agent_org == holder, e.c.custodian_org == holder, emergency_here))
    if query.patient is not None:
        conditions.append(e.c.patient_key == query.patient)
    if query.agent is not None:
        conditions.append(e.c.agent_id == query.agent)
    if query.organization is not None:
        conditions.append(e.c.agent_org == query.organization)
    if query.since_us is not None:
        conditions.append(e.c.recorded_us >= query.since_us)
    if query.until_us is not None:
        conditions.append(e.c.recorded_us < query.until_us)
    if query.kinds is not None:
        conditions.append(e.c.kind.in_(sorted(query.kinds)) if query.kinds else false())
    if query.outcome is not None:
        conditions.append(e.c.outcome == query.outcome)
    if query.action is not None:
        conditions.append(e.c.action == query.action)
    if query.denials:
        conditions.append(e.c.outcome != codes.SUCCESS)
    if query.emergencies:
        conditions.append(or_(e.c.emergency.is_(True), e.c.kind == "emergency"))
    return select(e).where(true(), *conditions).order_by(e.c.seq.desc())


def events(
    conn: Connection,
    query: AuditQuery,
    holder: str | None,
    *,
    limit: int | None = None,
    before_seq: int | None = None,
) -> list[Any]:
    """The matching events as ``holder``'s DPO sees them (``as_seen_by``), newest first;
    ``before_seq`` continues a page."""
    chosen = statement(query, holder)
    if before_seq is not None:
        chosen = chosen.where(audit_events.c.seq < before_seq)
    if limit is not None:
        chosen = chosen.limit(limit)
    return [as_seen_by(row, holder) for row in conn.execute(chosen)]


def event_by_id(conn: Connection, event_id: str, holder: str | None) -> Any:
    chosen = statement(AuditQuery(), holder).where(audit_events.c.event_id == event_id)
    found = conn.execute(chosen).first()
    return None if found is None else as_seen_by(found, holder)


_REFUSED_ELSEWHERE = (
    "refused: the data belongs to another organisation, which this organisation may not see"
)
# What an AuditEvent tells of the data: the patient, the holder, and the basis (consents,
# agreement) of the decision; the rest is the actor's own request.
_WHOSE_DATA = ("1", "17")  # entity roles: Patient, Data Repository


def as_seen_by(row: Row[Any], holder: str | None) -> Any:
    """An event as ``holder``'s DPO may read it: whole, unless its own actor was refused
    another organisation's data; then without that patient, holder and basis."""
    if (
        holder is None
        or row.agent_org != holder
        or row.custodian_org in (None, holder)
        or row.outcome == codes.SUCCESS
    ):
        return row
    event = orjson.loads(row.content)
    event["outcomeDesc"] = _REFUSED_ELSEWHERE
    event["entity"] = [
        entity
        for entity in event.get("entity", [])
        if entity.get("role", {}).get("code") not in _WHOSE_DATA
        and entity.get("type", {}).get("code") not in ("access-basis", "Consent")
    ]
    for agent in event.get("agent", []):
        agent.pop("policy", None)
    shown = {**row._mapping, "content": orjson.dumps(event)}
    return SimpleNamespace(**shown | {"patient_key": None, "custodian_org": None})


# -- the patient access report (NEN 7513) ----------------------------------------------------

REPORT_COLUMNS = (
    "when",
    "event",
    "action",
    "outcome",
    "reason",
    "user",
    "user_name",
    "organization",
    "role",
    "patient",
    "data",
    "query",
    "data_holder",
    "basis",
    "consents",
    "agreement",
    "emergency",
    "emergency_reason",
    "purpose",
    "request_id",
    "sequence",
)


def report_line(row: Row[Any]) -> dict[str, Any]:
    """One event as a line of the access report: who, when, which data, on which basis."""
    event = orjson.loads(row.content)
    requestor: dict[str, Any] = next((a for a in event.get("agent", []) if a.get("requestor")), {})
    data: list[str] = []
    consents: list[str] = []
    query = ""
    basis: dict[str, str] = {}
    details: dict[str, str] = {}
    for entity in event.get("entity", []):
        role = entity.get("role", {}).get("code")
        kind = entity.get("type", {}).get("code")
        if role == "4":
            data.append(entity["what"]["reference"])
        elif role == "24":
            query = entity.get("description", "")
        elif kind == "access-basis":
            basis = {d["type"]: d["valueString"] for d in entity.get("detail", [])}
        elif kind == "details":
            details = {d["type"]: d["valueString"] for d in entity.get("detail", [])}
        elif kind == "Consent":
            consents.append(entity["what"]["reference"])
    purposes = [c["code"] for p in event.get("purposeOfEvent", []) for c in p.get("coding", [])]
    return {
        "when": event["recorded"],
        "event": row.kind,
        "action": row.action,
        "outcome": row.outcome,
        "reason": event.get("outcomeDesc", ""),  # why it was refused or failed
        "user": row.agent_id,
        "user_name": requestor.get("name", ""),
        "organization": row.agent_org or "",
        "role": row.agent_role or "",
        "patient": row.patient_key or "",
        "data": " ".join(data),
        "query": query,
        "data_holder": row.custodian_org or "",
        "basis": basis.get("kind", ""),
        "consents": " ".join(consents),
        "agreement": basis.get("agreement", ""),
        "emergency": bool(row.emergency) or row.kind == "emergency",
        # An access opened by an emergency carries its reason; so does the declaration itself.
        "emergency_reason": basis.get("emergency-reason")
        or (details.get("reason", "") if row.kind == "emergency" else ""),
        "purpose": " ".join(purposes),
        "request_id": row.request_id,
        "sequence": int(row.seq),
    }


def report_csv(rows: Iterable[Row[Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line = report_line(row)
        line["emergency"] = "yes" if line["emergency"] else "no"
        writer.writerow(line)
    return out.getvalue()


def report_json(rows: Iterable[Row[Any]], flags: Sequence[Flag]) -> bytes:
    return orjson.dumps(
        {"events": [report_line(row) for row in rows], "flags": [f.as_dict() for f in flags]}
    )


def report_bundle(rows: Iterable[Row[Any]], base_url: str, timestamp_us: int) -> bytes:
    """The events as a FHIR ``collection`` Bundle of AuditEvents, stored bytes unchanged."""
    return bundle_bytes(
        "collection",
        (BundleEntry(f"{base_url}/AuditEvent/{row.event_id}", bytes(row.content)) for row in rows),
        timestamp_us=timestamp_us,
    )


# -- anomaly flags -------------------------------------------------------------------------


@dataclass(frozen=True)
class Thresholds:
    patients: int = 20  # distinct patients one person opens ...
    window_s: int = 3600  # ... within this window, to be flagged
    denials: int = 3  # refused accesses of one agent, to be flagged


@dataclass(frozen=True)
class Flag:
    kind: str  # many-patients, emergency, repeated-denials
    agent: str
    organization: str | None
    count: int
    first_us: int
    last_us: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "agent": self.agent,
            "organization": self.organization or "",
            "count": self.count,
            "first": instant(self.first_us),
            "last": instant(self.last_us),
        }


def anomalies(rows: Sequence[Row[Any]], thresholds: Thresholds = Thresholds()) -> list[Flag]:
    """What a DPO should look at: a person opening many distinct patients in a short time,
    every person's emergency accesses, and agents refused again and again."""
    flags: list[Flag] = []
    by_agent: dict[tuple[str, str | None], list[Row[Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.seq):
        by_agent[(row.agent_id, row.agent_org)].append(row)
    window_us = thresholds.window_s * 1_000_000
    for (agent, org), own in by_agent.items():
        if own[0].agent_kind == "user":
            peak = _most_patients_in_window(own, window_us)
            if peak is not None and peak[0] >= thresholds.patients:
                flags.append(Flag("many-patients", agent, org, *peak))
        emergencies = [r for r in own if r.kind == "emergency"]
        if emergencies:
            flags.append(
                Flag(
                    "emergency",
                    agent,
                    org,
                    len(emergencies),
                    emergencies[0].recorded_us,
                    emergencies[-1].recorded_us,
                )
            )
        refused = [r for r in own if r.outcome != codes.SUCCESS]
        if len(refused) >= thresholds.denials:
            flags.append(
                Flag(
                    "repeated-denials",
                    agent,
                    org,
                    len(refused),
                    refused[0].recorded_us,
                    refused[-1].recorded_us,
                )
            )
    return flags


def _most_patients_in_window(
    rows: Sequence[Row[Any]], window_us: int
) -> tuple[int, int, int] | None:
    """The largest number of distinct patients within one window, with its first and last
    moment (a sliding window over the agent's events in time order)."""
    opened = [r for r in rows if r.patient_key and r.action in ("R", "E")]
    best: tuple[int, int, int] | None = None
    window: deque[Row[Any]] = deque()
    counts: dict[str, int] = defaultdict(int)
    for row in opened:
        window.append(row)
        counts[row.patient_key] += 1
        while row.recorded_us - window[0].recorded_us > window_us:
            gone = window.popleft()
            counts[gone.patient_key] -= 1
            if not counts[gone.patient_key]:
                del counts[gone.patient_key]
        if best is None or len(counts) > best[0]:
            best = (len(counts), window[0].recorded_us, row.recorded_us)
    return best
