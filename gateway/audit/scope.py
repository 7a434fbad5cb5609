"""What one service call touched, collected while it runs and turned into AuditEvents at its end.

A service call opens an ``AuditScope`` and attaches it to its database connection; the store
notes every version it writes (``note_write``) and the service every resource it returns
(``saw``) and every access decision it takes by name (``decided``). ``facts`` then makes one
event per patient and organisation whose data was touched (BALP: one AuditEvent per patient),
each with the basis of the access, plus an ``AuthZ-Consent`` event per patient and organisation
for every access to another organisation's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from gateway.audit import codes
from gateway.audit.event import Agent, AuditFacts, Basis

_KEY = "zorgbrug.audit_scope"
# Writes that a scope of these kinds records as one event per action (create/update/delete).
_PER_ACTION = {"transaction": None, "batch": None}
_WRITE_KINDS = {"C": "create", "U": "update", "D": "delete"}
MAX_REFERENCES = 1000  # per event; a larger result is summarised by its count


@dataclass(frozen=True, slots=True)
class Touch:
    """One resource version read or written."""

    action: str  # C, R, U, D
    reference: str  # Type/id/_history/version
    owner: str | None
    patient_key: str | None
    patient_ref: str | None
    category: str | None = None
    data_date_us: int | None = None
    rid: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """An access decision taken by name (a read refused, a push admitted, a delivery denied)."""

    permit: bool
    basis: Basis
    patient_key: str | None
    holder: str | None
    patient_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Interaction:
    """What the call was: a key of ``codes.KINDS`` (or ``transaction``/``batch``, whose writes
    are recorded per action), the target, the query, further facts."""

    kind: str
    target: str | None = None  # "Type" or "Type/id" of the request
    query: str | None = None
    details: tuple[tuple[str, str], ...] = ()
    action: str | None = None  # when the kind's own does not fit (an account created: C)


# A function that says on which basis the agent saw a resource of another organisation.
BasisOf = Callable[[Connection, Touch], Basis]


@dataclass
class AuditScope:
    agent: Agent
    request_id: str
    interaction: Interaction
    correlation_id: str | None = None
    purpose: str = "TREAT"
    # False when only consent or an emergency could open the data (the clinician's viewer):
    # then "addressed to the organisation" is no basis of what was seen.
    addressed: bool = True
    touches: list[Touch] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    named_patient: str | None = None  # the BSN a query was about, when it named one
    # Resources the call's visibility checks found addressed to the agent's organisation.
    addressed_rids: set[int] = field(default_factory=set)
    # Resources of others they found opened by a consent grant and one agreement, not
    # addressed: rid -> (the grant's consent ids, the agreement id).
    granted: dict[int, tuple[tuple[str, ...], str]] = field(default_factory=dict)

    # -- noting -----------------------------------------------------------------------------

    def saw(self, touch: Touch) -> None:
        self.touches.append(touch)

    def decided(self, decision: Decision) -> None:
        self.decisions.append(decision)

    # -- the events -------------------------------------------------------------------------

    def facts(self, conn: Connection, basis_of: BasisOf) -> list[AuditFacts]:
        """The events of a call that succeeded, each with its basis."""
        now = time.time_ns() // 1000
        groups: dict[tuple[Any, ...], list[Touch]] = {}
        bases: dict[tuple[Any, ...], Basis] = {}
        for touch in self.touches:
            basis = self._basis(conn, touch, basis_of)
            patient = touch.patient_key or touch.patient_ref
            key = (touch.action, patient, touch.owner, basis)
            groups.setdefault(key, []).append(touch)
            if touch.action == "R" and _foreign(self.agent, touch.owner) and touch.owner:
                bases.setdefault((touch.patient_key, touch.patient_ref, touch.owner), basis)
        events = [self._event(touches, basis, now) for (_, _, _, basis), touches in groups.items()]
        if not events:
            events.append(
                self._fact(
                    now,
                    patient_key=self.named_patient,
                    data=(self.interaction.target,) if self._names_instance() else (),
                )
            )
        decided = {(d.patient_key, d.patient_ref, d.holder) for d in self.decisions}
        for (patient_key, patient_ref, holder), basis in bases.items():
            if (patient_key, patient_ref, holder) not in decided:
                self.decisions.append(Decision(True, basis, patient_key, holder, patient_ref))
        events += [self._decision_event(d, now) for d in self.decisions]
        return events

    def failed(self, outcome: str, description: str) -> list[AuditFacts]:
        """The events of a call that was refused or failed: nothing it wrote remains."""
        now = time.time_ns() // 1000
        reads = [t for t in self.touches if t.action == "R"]
        # A refusal by consent names the patient and holder the refused data belonged to, so
        # the attempt shows in that patient's report and to the holder's DPO.
        refused = next((d for d in self.decisions if not d.permit), None)
        patient = next((t.patient_key for t in reads if t.patient_key), self.named_patient)
        patient_ref = None
        if patient is None and refused is not None:  # its BSN, or else its record's reference
            patient, patient_ref = refused.patient_key, refused.patient_ref
        event = self._fact(
            now,
            outcome=outcome,
            outcome_desc=description,
            patient_key=patient,
            patient_ref=None if patient else patient_ref,
            custodian=refused.holder if refused is not None else None,
            data=(self.interaction.target,) if self._names_instance() else (),
        )
        return [event, *(self._decision_event(d, now) for d in self.decisions)]

    # -- helpers ----------------------------------------------------------------------------

    def _basis(self, conn: Connection, touch: Touch, basis_of: BasisOf) -> Basis:
        if self.agent.kind == "local" and self.agent.organization is None:
            return OPERATOR
        if touch.owner == self.agent.organization:
            return OWN
        if touch.owner == "network":
            return DIRECTORY
        if touch.action != "R":
            return OWN  # a write is always to the writer's own data
        return basis_of(conn, touch)

    def _names_instance(self) -> bool:
        return bool(self.interaction.target and "/" in self.interaction.target)

    def _event(self, touches: list[Touch], basis: Basis, now: int) -> AuditFacts:
        first = touches[0]
        kind = self.interaction.kind
        if kind in _PER_ACTION:
            kind = _WRITE_KINDS.get(first.action, "read")
        references = tuple(t.reference for t in touches[:MAX_REFERENCES])
        details = self.interaction.details
        if len(touches) > MAX_REFERENCES:
            details = (*details, ("resources", str(len(touches))))
        return self._fact(
            now,
            kind=kind,
            action=first.action if kind in _WRITE_KINDS.values() else self.interaction.action,
            patient_key=first.patient_key,
            patient_ref=first.patient_ref,
            custodian=first.owner,
            data=references,
            basis=basis,
            details=details,
        )

    def _decision_event(self, decision: Decision, now: int) -> AuditFacts:
        return self._fact(
            now,
            kind="consent-decision",
            action=None,
            # A refusal is the request's failure, as its 403/404 is (not a failure of ours).
            outcome=codes.SUCCESS if decision.permit else codes.MINOR_FAILURE,
            outcome_desc=None if decision.permit else decision.basis.explanation,
            patient_key=decision.patient_key,
            patient_ref=decision.patient_ref,
            custodian=decision.holder,
            basis=decision.basis,
            query=None,
        )

    def _fact(self, now: int, **facts: Any) -> AuditFacts:
        basis = facts.get("basis")
        values: dict[str, Any] = {
            "kind": self.interaction.kind,
            "agent": self.agent,
            "request_id": self.request_id,
            "correlation_id": self.correlation_id,
            "purpose": "ETREAT" if basis is not None and basis.emergency else self.purpose,
            "query": self.interaction.query,
            "details": self.interaction.details,
            "action": self.interaction.action,
            "recorded_us": now,
        }
        values.update(facts)
        return AuditFacts(**values)


OPERATOR = Basis("operator", "operator", explanation="the gateway's operator at its console")
OWN = Basis("own-organisation", "own-organisation", explanation="the organisation's own data")
DIRECTORY = Basis("directory", "directory", explanation="the network directory, open to members")


def _foreign(agent: Agent, owner: str | None) -> bool:
    return owner not in (agent.organization, "network", None)


def attach(conn: Connection, scope: AuditScope | None) -> None:
    """Make ``scope`` the one this transaction's notes go to (None: detach)."""
    if scope is None:
        conn.info.pop(_KEY, None)
    else:
        conn.info[_KEY] = scope


def scope_of(conn: Connection) -> AuditScope | None:
    scope = conn.info.get(_KEY)
    return scope if isinstance(scope, AuditScope) else None


def note_write(conn: Connection, touch: Touch) -> None:
    """The store calls this for every version it writes."""
    scope = scope_of(conn)
    if scope is not None:
        scope.touches.append(touch)
