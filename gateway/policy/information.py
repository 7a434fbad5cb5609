"""Policy information: the consents, agreements, emergencies and organisations in the store."""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import orjson
from sqlalchemy import (
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Connection

from consent import (
    LINEAGE,
    AccessDecision,
    AccessRequest,
    Agreement,
    Emergency,
    NetworkPolicy,
    PatientConsent,
    PolicyFacts,
    agreement_from_contract,
    agreement_grants,
    categories_of,
    consent_grants,
    decide,
    emergency_may_cover,
    parse_consent,
)
from gateway.context import NETWORK
from gateway.fhir.dutch_identifiers import BSN, URA, normalized_system
from gateway.store import locks
from gateway.store.driver_sql import constant, rows_of
from gateway.store.schema import (
    agreement_grants as agreement_rows,
)
from gateway.store.schema import (
    consent_grants as consent_rows,
)
from gateway.store.schema import (
    consent_named_holders,
    data_category_lineage,
    emergencies,
    resource_shares,
    resources,
)

ORGANIZATION_TYPE_SYSTEMS = {
    "http://nictiz.nl/fhir/NamingSystem/organization-type",
    "urn:oid:2.16.840.1.113883.2.4.15.1060",
}
# The purpose ordinary reads run under; emergencies are the ETREAT path of their own.
READ_PURPOSE = "TREAT"
NEVER_US = 2**62  # the "unbounded" end of a range in the grants tables
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime | None, default: int) -> int:
    return default if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


_OF_NETWORK = (
    resources.c.res_type.in_(constant(("Organization", "Contract", "Endpoint"))),
    resources.c.owner_org == constant(NETWORK),
    resources.c.deleted.is_(False),
)
# The network's resources are known by (rid, version): their contents are read and parsed again
# only when those change (every change of content is a new version).
_NETWORK_VERSIONS = (
    select(resources.c.rid, resources.c.version).where(*_OF_NETWORK).order_by(resources.c.rid)
)
_NETWORK_CONTENTS = (
    select(resources.c.rid, resources.c.version, resources.c.res_type, resources.c.content)
    .where(*_OF_NETWORK)
    .order_by(resources.c.rid)
)


@dataclass(frozen=True)
class Organization:
    """A registered organisation: an Organization of the network's directory with its URA."""

    id: str
    ura: str
    name: str
    endpoint: str | None  # where its notifications are delivered, if it registered one
    active: bool = True


@dataclass(frozen=True)
class Network:
    """The network's directory and agreements, as stored."""

    directory: Mapping[str, frozenset[str]]  # URA -> organisation types
    agreements: tuple[Agreement, ...]
    organizations: tuple[Organization, ...] = ()

    @functools.cached_property
    def _by_ura(self) -> Mapping[str, Organization]:
        found: dict[str, Organization] = {}
        for organization in self.organizations:  # oldest first: the first registration wins
            found.setdefault(organization.ura, organization)
        return found

    def by_ura(self, ura: str) -> Organization | None:
        return self._by_ura.get(ura)

    def by_id(self, org_id: str) -> Organization | None:
        return next((o for o in self.organizations if o.id == org_id), None)


_OF_PATIENTS = (
    resources.c.res_type == constant("Consent"),
    resources.c.patient_key.in_(bindparam("keys", expanding=True)),
    resources.c.deleted.is_(False),
)
_CONSENTS_OF = (
    select(resources.c.patient_key, resources.c.content)
    .where(*_OF_PATIENTS)
    .order_by(resources.c.rid)
)


_ADDRESSED_TO = (
    resource_shares.c.rid.in_(bindparam("rids", expanding=True)),
    resource_shares.c.org_ura == bindparam("org"),
    resource_shares.c.active.is_(True),
)
_ADDRESSED = select(resource_shares.c.rid).where(*_ADDRESSED_TO)


def _no(column: Any) -> Any:
    return cast(null(), column.type)


_NETWORK_ARM = select(
    constant("network").label("kind"),
    resources.c.rid,
    resources.c.version,
    _no(resources.c.patient_key).label("patient_key"),
    _no(resources.c.content).label("content"),
).where(*_OF_NETWORK)
_ADDRESSED_ARM = select(
    constant("addressed"),
    resource_shares.c.rid,
    _no(resources.c.version),
    _no(resources.c.patient_key),
    _no(resources.c.content),
).where(*_ADDRESSED_TO)
_CONSENT_ARM = select(
    constant("consent"),
    resources.c.rid,
    _no(resources.c.version),
    resources.c.patient_key,
    resources.c.content,
).where(*_OF_PATIENTS)


@functools.cache
def _call_facts_statement(addressed: bool, consents: bool) -> Any:
    """What the audit basis of a call needs, in one statement: the versions of the directory
    and agreements and, when asked, which of its resources were addressed to the organisation
    and the consents of its patients. An arm is left out rather than given an empty list:
    SQLite reads every Consent for ``patient_key IN ()``."""
    arms = [
        _NETWORK_ARM,
        *([_ADDRESSED_ARM] if addressed else []),
        *([_CONSENT_ARM] if consents else []),
    ]
    return union_all(*arms).order_by("rid")


@dataclass(frozen=True)
class CallFacts:
    """What the audit basis of one call needs (``PolicyInformation.call_facts``)."""

    addressed: frozenset[int]  # the call's resources addressed to the organisation
    directory: Mapping[str, frozenset[str]]
    agreements: tuple[Agreement, ...]
    facts: Mapping[str, PolicyFacts]  # per patient, without emergencies


_EMERGENCIES_OF = (
    select(
        emergencies.c.actor_id,
        emergencies.c.actor_org,
        emergencies.c.patient_key,
        emergencies.c.reason,
        emergencies.c.start_us,
        emergencies.c.end_us,
    )
    .where(emergencies.c.patient_key.in_(bindparam("keys", expanding=True)))
    .order_by(emergencies.c.start_us)
)


def _network_of(contents: Mapping[str, list[bytes]]) -> Network:
    addresses = {}
    for content in contents["Endpoint"]:
        endpoint = orjson.loads(content)
        addresses[f"Endpoint/{endpoint.get('id')}"] = endpoint.get("address")
    types: dict[str, frozenset[str]] = {}
    registered = []
    for content in contents["Organization"]:
        organization = orjson.loads(content)
        ura = _identifier(organization, URA)
        if not ura:
            continue
        types[ura] = frozenset(
            str(coding.get("code"))
            for concept in organization.get("type") or []
            for coding in concept.get("coding") or []
            if coding.get("system") in ORGANIZATION_TYPE_SYSTEMS
        )
        endpoint = None
        for reference in organization.get("endpoint") or []:
            endpoint = addresses.get(str(reference.get("reference")), endpoint)
        name, active = organization.get("name", ""), organization.get("active", True)
        registered.append(Organization(organization["id"], ura, name, endpoint, active))
    agreements = tuple(agreement_from_contract(orjson.loads(c)) for c in contents["Contract"])
    # Kept between calls: read-only values.
    return Network(MappingProxyType(types), agreements, tuple(registered))


class StoreResolver:
    """Resolves a Consent's literal references through the store (consent.ReferenceResolver)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def organization_ura(self, reference: str) -> str | None:
        resource = _current(self.conn, reference)
        return _identifier(resource, URA) if resource else None

    def patient_key(self, reference: str) -> str | None:
        resource = _current(self.conn, reference)
        return _identifier(resource, BSN) if resource else None


class OwnResolver(StoreResolver):
    """For an organisation recording a Consent: only its own patients can be named."""

    def __init__(self, conn: Connection, organization: str | None) -> None:
        super().__init__(conn)
        self.organization = organization

    def patient_key(self, reference: str) -> str | None:
        resource = _current(self.conn, reference, owner=self.organization)
        return _identifier(resource, BSN) if resource else None


class PolicyInformation:
    """Reads and maintains what consent decides on, inside the caller's transaction."""

    def __init__(self, policy: NetworkPolicy) -> None:
        self.policy = policy
        self._network: tuple[tuple[tuple[int, int], ...], Network] | None = None
        self._consents = ParsedConsents()

    # -- facts ------------------------------------------------------------------------------

    def directory(self, conn: Connection) -> Mapping[str, frozenset[str]]:
        """Every registered organisation's URA and organisation types."""
        return self.network(conn).directory

    def consents(self, conn: Connection, patient_key: str) -> list[PatientConsent]:
        return self.consents_of(conn, [patient_key]).get(patient_key, [])

    def consents_of(
        self, conn: Connection, patient_keys: Sequence[str]
    ) -> dict[str, list[PatientConsent]]:
        """The consents of several patients, read in one statement."""
        if not patient_keys:
            return {}
        rows = rows_of(conn, _CONSENTS_OF, {"keys": list(patient_keys)})
        return self._consents.of_rows(conn, rows)

    @staticmethod
    def addressed(conn: Connection, organization: str, rids: Sequence[int]) -> set[int]:
        """Which of ``rids`` were addressed to ``organization`` (and not withdrawn)."""
        found = conn.execute(_ADDRESSED, {"rids": list(rids), "org": organization})
        return set(found.scalars())

    def call_facts(
        self, conn: Connection, organization: str, rids: Sequence[int], patient_keys: Sequence[str]
    ) -> CallFacts:
        """Which of ``rids`` were addressed to ``organization``, the directory and agreements,
        and the consent facts of the patients (no emergencies: they matter only where consent
        does not permit), in one statement where they took five."""
        values = {"rids": sorted(rids), "org": organization, "keys": sorted(patient_keys)}
        addressed: set[int] = set()
        versions: list[tuple[int, int]] = []
        consents: list[tuple[str, bytes]] = []
        statement = _call_facts_statement(bool(rids), bool(patient_keys))
        for kind, rid, version, patient_key, content in rows_of(conn, statement, values):
            if kind == "addressed":
                addressed.add(rid)
            elif kind == "network":
                versions.append((rid, version))
            else:
                consents.append((patient_key, content))
        network = self._network_at(conn, tuple(versions))
        agreements = network.agreements
        facts = self._facts(patient_keys, self._consents.of_rows(conn, consents), agreements, {})
        return CallFacts(frozenset(addressed), network.directory, agreements, facts)

    def agreements(self, conn: Connection) -> tuple[Agreement, ...]:
        """The network's agreements: the Contract resources of its directory."""
        return self.network(conn).agreements

    def network(self, conn: Connection) -> Network:
        """The directory (with the organisations' endpoints) and the agreements. Their versions
        are read on every call, so no process acts on a stale directory or agreement; their
        contents only when those changed."""
        versions = tuple((rid, version) for rid, version in rows_of(conn, _NETWORK_VERSIONS, {}))
        return self._network_at(conn, versions)

    def _network_at(self, conn: Connection, versions: tuple[tuple[int, int], ...]) -> Network:
        known = self._network
        if known is not None and known[0] == versions:
            return known[1]
        contents: dict[str, list[bytes]] = {"Organization": [], "Contract": [], "Endpoint": []}
        read: list[tuple[int, int]] = []
        for rid, version, res_type, content in conn.execute(_NETWORK_CONTENTS):
            contents[res_type].append(content)
            read.append((rid, version))
        value = _network_of(contents)
        self._network = (tuple(read), value)
        return value

    def emergencies_of(
        self, conn: Connection, patient_keys: Sequence[str]
    ) -> dict[str, list[Emergency]]:
        """The declared emergencies for several patients, read in one statement."""
        found: dict[str, list[Emergency]] = {}
        if not patient_keys:
            return found
        rows = rows_of(conn, _EMERGENCIES_OF, {"keys": list(patient_keys)})
        for actor_id, actor_org, patient_key, reason, start_us, end_us in rows:
            found.setdefault(patient_key, []).append(
                Emergency(
                    actor_id=actor_id,
                    actor_org=actor_org,
                    patient=patient_key,
                    reason=reason,
                    start=from_us(start_us),
                    end=from_us(end_us),
                )
            )
        return found

    def facts_of(
        self,
        conn: Connection,
        patient_keys: Sequence[str],
        *,
        agreements: tuple[Agreement, ...],
        with_emergencies: bool = True,
    ) -> dict[str, PolicyFacts]:
        """What consent decides on, for each of several patients, with the network's
        ``agreements``: a statement for the consents and one for the emergencies (unless not
        wanted)."""
        consents = self.consents_of(conn, patient_keys)
        declared = self.emergencies_of(conn, patient_keys) if with_emergencies else {}
        return self._facts(patient_keys, consents, agreements, declared)

    def _facts(
        self,
        patient_keys: Sequence[str],
        consents: Mapping[str, list[PatientConsent]],
        agreements: tuple[Agreement, ...],
        declared: Mapping[str, list[Emergency]],
    ) -> dict[str, PolicyFacts]:
        return {
            key: PolicyFacts(
                consents=tuple(consents.get(key, ())),
                agreements=agreements,
                emergencies=tuple(declared.get(key, ())),
                policy=self.policy,
            )
            for key in patient_keys
        }

    def decide(
        self,
        conn: Connection,
        *,
        actor_org: str,
        actor_id: str,
        actor_role: str,
        holder_org: str,
        patient_key: str,
        resource_type: str,
        resource: dict[str, Any] | None = None,
        action: str = "read",
        purpose: str = READ_PURPOSE,
        data_date_us: int | None = None,
        network: Network | None = None,
    ) -> AccessDecision:
        """consent.decide with the facts from the store, now (``network``: as the caller
        read it in this transaction)."""
        network = network or self.network(conn)
        request = AccessRequest(
            actor_org=actor_org,
            actor_org_types=network.directory.get(actor_org, frozenset()),
            actor_id=actor_id,
            actor_role=actor_role,
            holder_org=holder_org,
            patient=patient_key,
            purpose=purpose,
            action=action,  # type: ignore[arg-type]
            resource_type=resource_type,
            categories=categories_of(resource_type, resource),
            data_date=None if data_date_us is None else from_us(data_date_us),
            at=datetime.now(UTC),
        )
        facts = self.facts_of(
            conn,
            [patient_key],
            agreements=network.agreements,
            with_emergencies=emergency_may_cover(request),
        )
        return decide(request, facts[patient_key])

    # -- the conditions as rows ---------------------------------------------------------------

    def refresh_patient(self, conn: Connection, patient_key: str) -> None:
        """Recompute one patient's consent rows after a Consent of theirs changed."""
        # Without it two Consents written at once for one patient each recompute the rows
        # without the other's, and the last to commit wins (a deny could be lost).
        locks.hold(conn, f"consent-rows:{patient_key}")
        conn.execute(delete(consent_rows).where(consent_rows.c.patient_key == patient_key))
        conn.execute(
            delete(consent_named_holders).where(consent_named_holders.c.patient_key == patient_key)
        )
        consents = self.consents(conn, patient_key)
        if not consents:
            return
        named = sorted({h for c in consents for p in c.root.walk() if p.holders for h in p.holders})
        rows = consent_grants(
            patient_key,
            consents,
            self.directory(conn),
            [*named, "*"],  # "*": every holder no consent names is judged alike
            self.policy,
            purposes=[READ_PURPOSE],
        )
        if rows:
            conn.execute(
                insert(consent_rows),
                [
                    {
                        "patient_key": patient_key,
                        "grantee_org": row.grantee_org,
                        "holder_org": row.holder_org,
                        "category": row.category,
                        "purpose": row.purpose,
                        "valid_from_us": to_us(row.valid_from, -NEVER_US),
                        "valid_to_us": to_us(row.valid_to, NEVER_US),
                        "data_from_us": to_us(row.data_from, -NEVER_US),
                        "data_to_us": to_us(row.data_to, NEVER_US),
                        "covers_dated": row.covers_dated,
                        "covers_undated": row.covers_undated,
                        "consent_ids": " ".join(row.consent_ids),
                    }
                    for row in rows
                ],
            )
        if named:
            conn.execute(
                insert(consent_named_holders),
                [{"patient_key": patient_key, "holder_org": holder} for holder in named],
            )

    def refresh_agreements(self, conn: Connection) -> None:
        """Recompute the agreement rows after an agreement was added, changed or ended."""
        locks.hold(conn, "agreement-rows")
        conn.execute(delete(agreement_rows))
        rows = agreement_grants(self.agreements(conn), purposes=[READ_PURPOSE])
        if rows:
            conn.execute(
                insert(agreement_rows),
                [
                    {
                        "holder_org": row.holder_org,
                        "grantee_org": row.grantee_org,
                        "category": row.category,
                        "purpose": row.purpose,
                        "valid_from_us": to_us(row.valid_from, -NEVER_US),
                        "valid_to_us": to_us(row.valid_to, NEVER_US),
                        "agreement_id": row.agreement_id,
                    }
                    for row in rows
                ],
            )

    def refresh_everything(self, conn: Connection) -> int:
        """Recompute every row (after the directory changed); how many patients."""
        self.refresh_agreements(conn)
        keys = conn.execute(
            select(resources.c.patient_key)
            .where(
                resources.c.res_type == "Consent",
                resources.c.patient_key.is_not(None),
                resources.c.deleted.is_(False),
            )
            .distinct()
        ).scalars()
        patients = [str(key) for key in keys]
        for key in patients:
            self.refresh_patient(conn, key)
        return len(patients)

    @staticmethod
    def install_categories(conn: Connection) -> None:
        """The category tree of this release, for the SQL that matches grants to resources."""
        conn.execute(delete(data_category_lineage))
        conn.execute(
            insert(data_category_lineage),
            [{"leaf": leaf, "category": c} for leaf, lineage in LINEAGE.items() for c in lineage],
        )

    # -- emergencies --------------------------------------------------------------------------

    @staticmethod
    def declare_emergency(
        conn: Connection, *, actor_id: str, actor_org: str, patient_key: str, reason: str
    ) -> Emergency:
        """Record a break-the-glass for one patient (consent.Emergency checks the reason)."""
        emergency = Emergency.declare(
            actor_id=actor_id,
            actor_org=actor_org,
            patient=patient_key,
            reason=reason,
            at=datetime.now(UTC),
        )
        conn.execute(
            insert(emergencies),
            {
                "emergency_id": str(uuid.uuid4()),
                "actor_id": actor_id,
                "actor_org": actor_org,
                "patient_key": patient_key,
                "reason": emergency.reason,
                "start_us": to_us(emergency.start, 0),
                "end_us": to_us(emergency.end, NEVER_US),
            },
        )
        return emergency

    @staticmethod
    def active_emergency(conn: Connection, actor_id: str, patient_key: str) -> bool:
        return PolicyInformation.emergency_end(conn, actor_id, patient_key) is not None

    @staticmethod
    def emergency_end(conn: Connection, actor_id: str, patient_key: str) -> datetime | None:
        """When the actor's emergency for the patient ends, if one holds now."""
        now = time.time_ns() // 1000
        end = conn.execute(
            select(func.max(emergencies.c.end_us)).where(
                and_(
                    emergencies.c.actor_id == actor_id,
                    emergencies.c.patient_key == patient_key,
                    emergencies.c.start_us <= now,
                    emergencies.c.end_us > now,
                )
            )
        ).scalar_one_or_none()
        return from_us(end) if end is not None else None


class _NotingResolver(StoreResolver):
    """A StoreResolver that notes whether it was asked anything."""

    asked = False

    def organization_ura(self, reference: str) -> str | None:
        self.asked = True
        return super().organization_ura(reference)

    def patient_key(self, reference: str) -> str | None:
        self.asked = True
        return super().patient_key(reference)


class ParsedConsents:
    """Consents parsed from their stored JSON, kept by that JSON: the audit basis of every
    foreign read parses its patient's consents, which cost a third of the basis
    (bench/bench_consent_search.py, "other, opened"). The JSON is read on every call, so a
    revised or revoked consent is never judged from a stale parse. A parse that resolved a
    literal reference depends on other resources too and is not kept."""

    def __init__(self, limit: int = 10_000) -> None:
        self._parsed: dict[bytes, PatientConsent] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def of_rows(self, conn: Connection, rows: Any) -> dict[str, list[PatientConsent]]:
        """The consents of ``(patient_key, content)`` rows, per patient."""
        found: dict[str, list[PatientConsent]] = {}
        for key, content in rows:
            found.setdefault(key, []).append(self.parse(conn, bytes(content)))
        return found

    def parse(self, conn: Connection, content: bytes) -> PatientConsent:
        known = self._parsed.get(content)
        if known is not None:
            return known
        resolver = _NotingResolver(conn)
        parsed = parse_consent(orjson.loads(content), resolver=resolver)
        if not resolver.asked:
            with self._lock:
                if len(self._parsed) >= self._limit:
                    del self._parsed[next(iter(self._parsed))]  # the oldest kept
                self._parsed[content] = parsed
        return parsed


def _current(conn: Connection, reference: str, owner: str | None = None) -> dict[str, Any] | None:
    parts = reference.split("/")
    if len(parts) != 2:
        return None
    statement = select(resources.c.content).where(
        resources.c.res_type == parts[0],
        resources.c.res_id == parts[1],
        resources.c.deleted.is_(False),
    )
    if owner is not None:
        statement = statement.where(resources.c.owner_org == owner)
    content = conn.execute(statement).scalar_one_or_none()
    return orjson.loads(content) if content else None


def _identifier(resource: dict[str, Any], system: str) -> str | None:
    for identifier in resource.get("identifier") or []:
        if (
            isinstance(identifier, dict)
            and normalized_system(identifier.get("system", "")) == system
        ):
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None
