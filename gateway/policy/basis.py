"""On which basis an actor saw another organisation's resource: for the audit record.

The SQL visibility condition let the resource through; this names why, in the terms of
consent.decide: addressed to the actor's organisation (a directed referral), an agreement and
the patient's consent, or an emergency. Where the statement that let it through also told that
(search_sql.basis_columns: addressed, or the consent grant and the one agreement that opened
it), that is the basis (consent.read_granted); otherwise the facts are read once per patient per
call and decided.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection

from consent import (
    LINEAGE,
    AccessDecision,
    AccessRequest,
    Agreement,
    ConsentError,
    PolicyFacts,
    decide,
    read_granted,
)
from gateway.audit.event import Agent, Basis
from gateway.audit.scope import Touch
from gateway.context import NETWORK
from gateway.policy.information import READ_PURPOSE, PolicyInformation, from_us


class BasisFinder:
    """``basis_of`` for one call's AuditScope (see gateway.audit.scope.BasisOf)."""

    def __init__(
        self,
        policy: PolicyInformation,
        agent: Agent,
        purpose: str = READ_PURPOSE,
        *,
        addressed: bool = True,
        touches: Sequence[Touch] = (),
        known_addressed: Set[int] = frozenset(),
        known_granted: Mapping[int, tuple[tuple[str, ...], str]] | None = None,
    ):
        self.policy = policy
        self.agent = agent
        self.purpose = purpose
        self.addressed = addressed
        # The call's touches: what is needed for all of them is read at the first question.
        self.touches = touches
        self._directory: Mapping[str, frozenset[str]] = {}
        self._agreements: tuple[Agreement, ...] = ()
        self._facts: dict[str, PolicyFacts] = {}
        self._prefetched = False
        self._emergencies_read = False
        # What the call's SQL found opened by a consent grant and one agreement (not addressed):
        # rid -> (consent ids, agreement id); such a read needs neither facts nor a decision.
        self._granted = known_granted or {}
        # rids whose addressing is known, and of those the ones addressed to the organisation
        self._asked: set[int] = {*known_addressed, *self._granted}
        self._shared: set[int] = set(known_addressed)
        self._at = datetime.now(UTC)  # the call's moment, for every decision it asks
        self._decided: dict[tuple[Any, ...], Basis] = {}

    def _prefetch(self, conn: Connection, organization: str) -> None:
        """At the first question: what every foreign read of the call needs, at once."""
        self._prefetched = True
        ours = (organization, NETWORK)
        foreign = [
            t
            for t in self.touches
            if t.action == "R" and t.owner not in ours and t.rid not in self._asked
        ]
        rids = {t.rid for t in foreign if t.rid is not None} if self.addressed else set()
        keys = sorted({t.patient_key for t in foreign if t.patient_key})
        known = self.policy.call_facts(conn, organization, sorted(rids), keys)
        self._asked |= rids
        self._shared |= known.addressed
        self._directory, self._agreements = known.directory, known.agreements
        self._facts.update(known.facts)

    def _read_facts(self, conn: Connection, keys: Sequence[str]) -> None:
        # Emergencies only matter where consent does not permit: read when one is needed.
        if keys:
            self._facts.update(
                self.policy.facts_of(
                    conn,
                    keys,
                    agreements=self._agreements,
                    with_emergencies=self._emergencies_read,
                )
            )

    def _with_emergencies(self, conn: Connection, patient_key: str) -> PolicyFacts:
        """The patient's facts with the emergencies declared for them, read at the first need
        for every patient of the call."""
        self._emergencies_read = True
        declared = self.policy.emergencies_of(conn, sorted(self._facts))
        for key, facts in self._facts.items():
            self._facts[key] = dataclasses.replace(facts, emergencies=tuple(declared.get(key, ())))
        return self._facts[patient_key]

    def _referred(self, conn: Connection, organization: str, rid: int | None) -> bool:
        if not self.addressed or rid is None:
            return False
        if rid not in self._asked:  # a touch the call did not list beforehand
            self._shared |= self.policy.addressed(conn, organization, [rid])
            self._asked.add(rid)
        return rid in self._shared

    def __call__(self, conn: Connection, touch: Touch) -> Basis:
        organization = self.agent.organization or ""
        # What is known addressed or granted needs none of the facts the first question reads.
        explained = touch.rid in self._granted or (self.addressed and touch.rid in self._shared)
        if not self._prefetched and not explained:
            self._prefetch(conn, organization)
        if self._referred(conn, organization, touch.rid):
            return Basis(
                "referral",
                "addressed-to-organisation",
                explanation=f"sent to organisation {organization} by {touch.owner}",
            )
        category = touch.category or ""
        if touch.patient_key is None or touch.owner is None or category not in LINEAGE:
            return Basis("unknown", "unexplained", explanation="no basis could be established")
        resource_type = touch.reference.split("/", 1)[0]
        granted = None if touch.rid is None else self._granted.get(touch.rid)
        if granted is not None:  # the grant names the basis whatever the data date
            same = (touch.owner, touch.patient_key, resource_type, category, granted)
            if (known := self._decided.get(same)) is None:
                known = self._decided[same] = self._granted_basis(
                    touch, organization, resource_type, category, *granted
                )
            return known
        if touch.patient_key not in self._facts:
            self._read_facts(conn, [touch.patient_key])
        facts = self._facts[touch.patient_key]
        # A page of one patient's results is decided once: deciding each took a third of the
        # basis of Observation?patient.identifier=… (bench_consent_search.py, "other, opened").
        dated = touch.data_date_us if facts.judges_data_dates else None
        key = (touch.owner, touch.patient_key, resource_type, category, dated)
        if (known := self._decided.get(key)) is None:
            known = self._decided[key] = self._consent_basis(
                conn, touch, organization, resource_type, category, facts
            )
        return known

    def _granted_basis(
        self,
        touch: Touch,
        organization: str,
        resource_type: str,
        category: str,
        consent_ids: tuple[str, ...],
        agreement_id: str,
    ) -> Basis:
        try:
            request = self._request(touch, organization, resource_type, category)
        except ConsentError as error:
            return Basis("unknown", "unexplained", explanation=str(error))
        return basis_of_decision(read_granted(request, consent_ids, agreement_id))

    def _request(
        self, touch: Touch, organization: str, resource_type: str, category: str
    ) -> AccessRequest:
        assert touch.owner is not None and touch.patient_key is not None
        return AccessRequest(
            actor_org=organization,
            actor_org_types=self._directory.get(organization, frozenset()),
            actor_id=self.agent.id,
            actor_role=self.agent.role or "",
            holder_org=touch.owner,
            patient=touch.patient_key,
            purpose=self.purpose,
            action="read",
            resource_type=resource_type,
            categories=LINEAGE[category],
            data_date=None if touch.data_date_us is None else from_us(touch.data_date_us),
            at=self._at,
        )

    def _consent_basis(
        self,
        conn: Connection,
        touch: Touch,
        organization: str,
        resource_type: str,
        category: str,
        facts: PolicyFacts,
    ) -> Basis:
        assert touch.patient_key is not None
        try:
            request = self._request(touch, organization, resource_type, category)
        except ConsentError as error:  # data consent cannot judge is never opened by consent
            return Basis("unknown", "unexplained", explanation=str(error))
        decision = decide(request, facts)
        if not decision.permit and not self._emergencies_read:
            facts = self._with_emergencies(conn, touch.patient_key)
            if facts.emergencies:
                decision = decide(request, facts)
        if not decision.permit and facts.emergencies:
            # Reads are asked as TREAT; an emergency the actor declared opens them as ETREAT.
            emergency = decide(dataclasses.replace(request, purpose="ETREAT"), facts)
            if emergency.permit:
                decision = emergency
        return basis_of_decision(decision)


def basis_of_decision(decision: AccessDecision) -> Basis:
    """The audit Basis of a consent decision."""
    b = decision.basis
    return Basis(
        b.kind,
        b.rule,
        consent_ids=tuple(b.consent_ids),
        agreement_id=b.agreement_id,
        emergency_reason=b.emergency_reason,
        explanation=decision.explain(),
    )
