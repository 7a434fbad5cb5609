"""The access matrix: on every read path, each organisation gets exactly what ``consent.decide``
permits of another organisation's patient data: nothing more is returned, counted or delivered,
and nothing permitted is hidden.

One live gateway per backend holds four organisations: A-B share an agreement for all treatment
data, A-C one for results only, B-C one that has ended, D none. 54 patients of A (27 also of B)
are cycled through nine consent states (``STATES``), each with a lab result, another observation,
a problem (updated once: two versions), a medication statement, a document pushed with ITI-65 (its
DocumentReference, Binary and SubmissionSet) and their Consents. The expected outcome of every
(reader, resource) comes from ``consent.decide`` itself, on facts built from what this module
recorded, so the matrix proves that the gateway's SQL agrees with the decision function.

Readers: the system clients of A (on the patients B holds too), B, C and D, and a clinician of B
who broke the glass for the emergency patients. Paths: read, vread, instance history, search by
BSN per type (pages of two, every ``next`` followed) with ``_summary=count``, ``_id`` search,
``_include``, ``_revinclude``, batch and transaction GETs, ITI-68 retrieve, type and system
history. At the end, the edges the matrix exposed (old versions judged by their own columns).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from consent import (
    AccessDecision,
    AccessRequest,
    Agreement,
    AgreementDocument,
    Emergency,
    PatientConsent,
    PolicyFacts,
    categories_of,
    decide,
    parse_consent,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
A, B, C, D = "90000701", "90000702", "90000703", "90000704"
ORGANISATIONS = {A: "Houder", B: "Partner", C: "Uitslagen", D: "Vreemde"}
AGREEMENT_START = date(2025, 1, 1)  # what tests/harness.py records

# Consent states, cycled over the patients. A patient's round (its index // 9) picks a variant of
# its state (rounds 0-1 and 4-5: variant 0, rounds 2-3: variant 1), so that the SQL meets more
# than one way of writing each rule; in the odd rounds B holds the patient too.
STATES = (
    "none",
    "permit-network",
    "permit-one-org",
    "deny-one-org",
    "results-only",
    "expired",
    "revoked",
    "data-period",
    "emergency",
)
ROUNDS = 6
PATIENTS = len(STATES) * ROUNDS
DATA_PERIOD = ("2022-01-01", "2023-12-31")
# Clinical dates, cycled over patients and resources: inside, outside and on the edges of
# DATA_PERIOD (which, as dates, are Dutch calendar days, both included).
DATES = (
    "2019-11-20T09:00:00+01:00",
    "2021-12-31T23:59:59+01:00",
    "2022-01-01",
    "2022-01-01T00:00:00+01:00",
    "2022-07",
    "2023-06-15T10:00:00+02:00",
    "2023-12-31T23:59:59+01:00",
    "2023-12-31",
    "2024-01-01T00:00:00+01:00",
    "2024-01-01",
)
# The resource types searched by patient, and the parameter that names the patient's BSN.
SEARCHED = {
    "Patient": "identifier",
    "Observation": "patient.identifier",
    "Condition": "patient.identifier",
    "MedicationStatement": "patient.identifier",
    "DocumentReference": "patient.identifier",
    "List": "patient.identifier",
    "Consent": "patient.identifier",
}
HELD_TYPES = (*SEARCHED, "Binary")


def _rules(state: str, variant: int) -> list[tuple[dict[str, Any], str]]:
    """The Consents (root provision, status it is updated to after recording) of ``state``.

    Variant 1 writes the rule another way: a network permit limited to A's data (CST), a permit
    for C instead of B, a deny for B of results only (nested in the permit, so B sees the Patient
    but not its results), results named by their Mitz code.
    """
    network = provision("permit")
    first = variant == 0
    if state == "permit-network":
        return [(network if first else provision("permit", held_by=[A]), "")]
    if state == "permit-one-org":
        return [(provision("permit", to=[B] if first else [C]), "")]
    if state == "deny-one-org":
        if first:
            return [(network, ""), (provision("deny", to=[B]), "")]
        no_results = provision("deny", to=[B], categories=["results"])
        return [(provision("permit", children=[no_results]), "")]
    if state == "results-only":
        results = {"categories": ["results"]} if first else {"mitz": ["GGC012"]}
        return [(provision("permit", **results), "")]
    if state == "expired":
        return [(provision("permit", period=("2020-01-01", "2021-12-31")), "")]
    if state == "revoked":
        return [(network, "inactive")]
    if state == "data-period":
        return [(provision("permit", data_period=DATA_PERIOD), "")]
    return []  # none, emergency


def _bsns() -> Iterator[str]:
    """Test BSNs (999...) that pass the elfproef."""
    for n in itertools.count(30_000):
        candidate = f"9999{n:05d}"
        weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
        if sum(int(d) * w for d, w in zip(candidate, weights, strict=True)) % 11 == 0:
            yield candidate


def _moment(value: str | None) -> date | datetime | None:
    """A FHIR date or dateTime as consent reads it: a date is its Dutch calendar day."""
    if value is None:
        return None
    if len(value) == 7:
        return date(int(value[:4]), int(value[5:]), 1)
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.fromisoformat(value)


# -- what the module records, and the oracle --------------------------------------------------


@dataclass
class Held:
    """One resource of one patient, held by one organisation, as the gateway stored it."""

    patient: int
    holder: str
    res_type: str
    res_id: str
    content: dict[str, Any]
    data_date: str | None
    versions: int = 1
    body: bytes | None = None  # a Binary's document content (ITI-68)

    @property
    def key(self) -> tuple[str, str]:
        return self.res_type, self.res_id


@dataclass
class Patient:
    index: int
    bsn: str
    state: str
    variant: int
    ids: dict[str, str] = field(default_factory=dict)  # holder -> its Patient id
    consents: list[PatientConsent] = field(default_factory=list)
    emergencies: list[Emergency] = field(default_factory=list)

    @property
    def at_b(self) -> bool:
        """Whether B holds the patient too: in the odd rounds."""
        return self.index // len(STATES) % 2 == 1

    @property
    def label(self) -> str:
        return f"patient {self.index} ({self.state}/{self.variant}, {self.bsn})"


@dataclass(frozen=True)
class Reader:
    """Who reads: an organisation's system client or its clinician, over HTTP."""

    name: str
    org: str
    actor_id: str  # matched against emergency declarations, as the gateway does
    client: httpx.Client
    patients: frozenset[int]  # the patients whose data this reader's checks visit


@dataclass
class World:
    backend: str
    patients: list[Patient]
    held: list[Held]
    agreements: list[Agreement]
    readers: dict[str, Reader]
    _decisions: dict[tuple[str, str, str], AccessDecision] = field(default_factory=dict)

    def of(self, patient: Patient, res_type: str) -> list[Held]:
        return [h for h in self.held if h.patient == patient.index and h.res_type == res_type]

    def decision(self, reader: Reader, held: Held) -> AccessDecision:
        """consent.decide for a read by ``reader``: the ordinary (TREAT) path, or the emergency
        (ETREAT) path that only the declaring clinician's break-the-glass opens."""
        key = (reader.name, *held.key)
        if key not in self._decisions:
            patient = self.patients[held.patient]
            at = datetime.now(UTC)

            def ask(purpose: str, facts: PolicyFacts) -> AccessDecision:
                request = AccessRequest(
                    actor_org=reader.org,
                    actor_org_types=frozenset(),
                    actor_id=reader.actor_id,
                    actor_role="system" if reader.actor_id.startswith("system") else "clinician",
                    holder_org=held.holder,
                    patient=patient.bsn,
                    purpose=purpose,
                    action="read",
                    resource_type=held.res_type,
                    categories=categories_of(held.res_type, held.content),
                    at=at,
                    data_date=_moment(held.data_date),
                )
                return decide(request, facts)

            ordinary = ask(
                "TREAT", PolicyFacts(consents=patient.consents, agreements=self.agreements)
            )
            emergency = ask(
                "ETREAT",
                PolicyFacts(emergencies=patient.emergencies, agreements=self.agreements),
            )
            self._decisions[key] = (
                emergency if emergency.permit and not ordinary.permit else ordinary
            )
        return self._decisions[key]

    def permits(self, reader: Reader, held: Held) -> bool:
        return self.decision(reader, held).permit

    def why(self, reader: Reader, held: Held) -> str:
        basis = self.decision(reader, held).basis
        return f"{basis.kind}: {basis.rule}"


class Mismatches:
    """Every place the gateway differs from the decision, reported together."""

    def __init__(self, world: World, reader: Reader) -> None:
        self.world, self.reader, self.found = world, reader, []
        self.checks = 0

    def expect(self, ok: bool, path: str, patient: Patient | None, what: str) -> None:
        self.checks += 1
        if not ok:
            who = patient.label if patient else "all patients"
            self.found.append(f"{self.reader.name} via {path}, {who}: {what}")

    def about(self, held: Held) -> str:
        holder = ORGANISATIONS[held.holder]
        return (
            f"{held.res_type}/{held.res_id} held by {holder} [{self.world.why(self.reader, held)}]"
        )

    def check(self) -> None:
        if self.found:
            pytest.fail(
                f"{self.world.backend}: {len(self.found)} of {self.checks} checks differ from "
                "consent.decide:\n  " + "\n  ".join(self.found[:40]),
                pytrace=False,
            )


# -- recording the world through the API ------------------------------------------------------


def _located(response: dict[str, Any]) -> tuple[str, str]:
    """Type and id from a transaction-response entry's location."""
    location = response["response"]["location"].split("/")
    return location[0], location[1]


def _transaction(client: httpx.Client, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answer = client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["entry"]


def _clinical(patient: Patient, holder: str, dated: Callable[[int], str]) -> list[dict[str, Any]]:
    """A transaction's entries: the Patient, a lab result, another observation, a problem and a
    medication statement; the round picks which Observation categories make them what they are."""
    variant = patient.variant
    subject = {"reference": "urn:uuid:patient"}
    lab = "laboratory" if variant == 0 else "vital-signs"
    other = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "social-history"}]}]
    resources = [
        {
            "resourceType": "Patient",
            "identifier": [{"system": BSN, "value": patient.bsn}],
            "name": [{"family": f"Matrix{patient.index}", "given": [ORGANISATIONS[holder]]}],
        },
        {
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": lab}]}],
            "code": {"text": "Hb"},
            "subject": subject,
            "effectiveDateTime": dated(0),
        },
        {
            "resourceType": "Observation",
            "status": "final",
            **({"category": other} if variant == 0 else {}),
            "code": {"text": "Rookt niet"},
            "subject": subject,
            "effectiveDateTime": dated(1),
        },
        {
            "resourceType": "Condition",
            "code": {"text": "Astma"},
            "subject": subject,
            "onsetDateTime": dated(2),
        },
        {
            "resourceType": "MedicationStatement",
            "status": "active",
            "medicationCodeableConcept": {"text": "Salbutamol"},
            "subject": subject,
            "effectiveDateTime": dated(3),
        },
    ]
    return [
        {
            "fullUrl": "urn:uuid:patient"
            if r["resourceType"] == "Patient"
            else f"urn:uuid:{uuid.uuid4()}",
            "resource": r,
            "request": {"method": "POST", "url": r["resourceType"]},
        }
        for r in resources
    ]


_DATE_ELEMENT = {
    "Observation": "effectiveDateTime",
    "Condition": "onsetDateTime",
    "MedicationStatement": "effectiveDateTime",
}


def _record_clinical(world: World, client: httpx.Client, patient: Patient, holder: str) -> None:
    def dated(kind: int) -> str:
        return DATES[(patient.index // len(STATES) + 3 * kind + (holder == B)) % len(DATES)]

    for answer in _transaction(client, _clinical(patient, holder, dated)):
        res_type, res_id = _located(answer)
        resource = answer["resource"]
        if res_type == "Patient":
            patient.ids[holder] = res_id
        world.held.append(
            Held(
                patient.index,
                holder,
                res_type,
                res_id,
                resource,
                resource.get(_DATE_ELEMENT.get(res_type, "")),
            )
        )


def _record_document(world: World, client: httpx.Client, patient: Patient) -> None:
    """ITI-65 from A to nobody: a DocumentReference with its Binary and SubmissionSet."""
    from gateway.exchange.compose import provide_document_bundle

    body = f"%PDF-1.4 matrix {patient.index}".encode()
    bundle = provide_document_bundle(
        content=body, content_type="application/pdf", bsn=patient.bsn, sender=A, recipients=[]
    )
    start = DATES[(patient.index // len(STATES) + 7) % len(DATES)]
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            entry["resource"]["context"] = {"period": {"start": start}}
    answer = client.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    for sent, got in zip(bundle["entry"], answer.json()["entry"], strict=True):
        res_type, res_id = _located(got)
        if res_type == "Patient":
            assert res_id == patient.ids[A]  # matched by BSN, not created again
            continue
        resource = sent["resource"]
        dated = {"DocumentReference": start, "Binary": start, "List": resource.get("date")}
        world.held.append(
            Held(
                patient.index,
                A,
                res_type,
                res_id,
                resource,
                dated[res_type],
                body=body if res_type == "Binary" else None,
            )
        )


def _record_consents(world: World, client: httpx.Client, patient: Patient) -> None:
    for n, (rules, later_status) in enumerate(_rules(patient.state, patient.variant)):
        resource = consent_json(f"c{n}", rules, patient=patient.bsn)
        resource.pop("id")
        resource.pop("organization")
        answer = client.post("/Consent", json=resource)
        assert answer.status_code == 201, answer.text
        stored, versions = answer.json(), 1
        if later_status:
            answer = client.put(f"/Consent/{stored['id']}", json=stored | {"status": later_status})
            assert answer.status_code == 200, answer.text
            stored, versions = answer.json(), 2
        patient.consents.append(parse_consent(stored))
        world.held.append(
            Held(patient.index, A, "Consent", stored["id"], stored, None, versions=versions)
        )


def _update_problems(world: World, clients: dict[str, httpx.Client]) -> None:
    """Every problem gets a second version (vread of both, history with two entries)."""
    problems = [h for h in world.held if h.res_type == "Condition"]
    by_holder: dict[str, list[Held]] = {}
    for held in problems:
        by_holder.setdefault(held.holder, []).append(held)
    for holder, helds in by_holder.items():
        entries = []
        for held in helds:
            held.content = held.content | {"clinicalStatus": {"text": "actief"}}
            entries.append(
                {
                    "resource": held.content,
                    "request": {"method": "PUT", "url": f"Condition/{held.res_id}"},
                }
            )
            held.versions = 2
        _transaction(clients[holder], entries)


def _agreement(
    agreement_id: str, parties: tuple[str, str], categories: str, **kw: Any
) -> Agreement:
    return Agreement(
        id=agreement_id,
        kind="processor",
        parties=frozenset(parties),
        purposes=frozenset({"TREAT"}),
        categories=frozenset({categories}),
        valid_from=AGREEMENT_START,
        document=AgreementDocument(title="(no signed document recorded)", url="urn:zorgbrug:none"),
        **kw,
    )


def _end_agreement(server: Any, agreement_id: str, on: date) -> None:
    from gateway.agreements import end_agreement
    from gateway.service.console import ConsoleChange
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    async def run() -> None:
        db = Database(server.settings.database_url, threads=1)
        try:
            service = ResourceService(db, server.settings)
            await service.start()
            await end_agreement(
                service, agreement_id, on, ConsoleChange.of("admin-organization", ("test",), "U")
            )
        finally:
            await db.dispose()

    asyncio.run(run())


def _break_the_glass(clinician: httpx.Client, patient: Patient) -> Emergency:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueIdentifier": {"system": BSN, "value": patient.bsn}},
            {"name": "reason", "valueString": "Bewusteloos op de SEH, geen toestemming te vragen"},
        ],
    }
    answer = clinician.post("/Patient/$break-the-glass", json=parameters)
    assert answer.status_code == 201, answer.text
    window = {p["name"]: p for p in answer.json()["parameter"]}
    return Emergency(
        actor_id="clinician",
        actor_org=B,
        patient=patient.bsn,
        reason="Bewusteloos op de SEH",
        start=datetime.fromisoformat(window["start"]["valueInstant"]),
        end=datetime.fromisoformat(window["end"]["valueInstant"]),
    )


@pytest.fixture(scope="module")
def world(server: Any) -> Iterator[World]:
    hospitals = {
        ura: server.hospital(ura, f"{name} Ziekenhuis") for ura, name in ORGANISATIONS.items()
    }
    ab = server.agreement(A, B)
    ac = server.agreement(A, C, categories=("results",))
    bc = server.agreement(B, C)
    ended_on = date.today() - timedelta(days=30)
    _end_agreement(server, bc, ended_on)
    agreements = [
        _agreement(ab, (A, B), "treatment"),
        _agreement(ac, (A, C), "results"),
        _agreement(bc, (B, C), "treatment", valid_to=ended_on, status="ended"),
    ]
    bsns = _bsns()
    patients = [
        Patient(i, next(bsns), STATES[i % len(STATES)], (i // len(STATES) // 2) % 2)
        for i in range(PATIENTS)
    ]
    clients = {ura: server.client(h) for ura, h in hospitals.items()}
    clinician = server.person(hospitals[B], "dr.spoed.matrix", "clinician")
    everyone = frozenset(range(PATIENTS))
    readers = {
        name: Reader(name, ura, f"system:{ura}", clients[ura], everyone)
        for name, ura in zip("BCD", (B, C, D), strict=True)
    }
    # A reads B's data of the patients B holds too (with its own beside them, as a control).
    readers["A"] = Reader(
        "A", A, f"system:{A}", clients[A], frozenset(p.index for p in patients if p.at_b)
    )
    # The clinician visits the emergency patients and, to compare with B's system client, three
    # others (no consent, a network permit, a deny for B).
    controls = {"none", "permit-network", "deny-one-org"}
    readers["B-clinician"] = Reader(
        "B-clinician",
        B,
        "clinician",
        clinician,
        frozenset(
            p.index
            for p in patients
            if p.state == "emergency" or (p.state in controls and p.index < len(STATES))
        ),
    )
    world = World(server.backend, patients, [], agreements, readers)
    try:
        for patient in patients:
            _record_clinical(world, clients[A], patient, A)
            if patient.at_b:
                _record_clinical(world, clients[B], patient, B)
            _record_document(world, clients[A], patient)
            _record_consents(world, clients[A], patient)
            if patient.state == "emergency":
                patient.emergencies.append(_break_the_glass(clinician, patient))
        _update_problems(world, clients)
        yield world
    finally:
        for client in [*clients.values(), clinician]:
            client.close()


READERS = ("A", "B", "C", "D", "B-clinician")


def _visited(world: World, reader: Reader) -> Iterator[tuple[Patient, Held]]:
    for held in world.held:
        if held.patient in reader.patients:
            yield world.patients[held.patient], held


def _parallel(work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``work`` on each item, three requests in flight (the server waits on its database)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(work, items))


def _version(entry: dict[str, Any]) -> int:
    return int(entry["response"]["etag"].removeprefix("W/").strip('"'))


def _pages(client: httpx.Client, path: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every page of a search or history, following ``next`` links."""
    page = client.get(path, params=params)
    while True:
        assert page.status_code == 200, page.text
        bundle = page.json()
        yield bundle
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return
        page = client.get(following[0])


@pytest.mark.parametrize("name", READERS)
def test_read_vread_and_history_of_each_resource_follow_the_decision(world, name):
    """Read, vread of every version and instance history: 200 with the resource and all its
    versions where permitted, 404 where denied."""
    reader = world.readers[name]
    fhir, seen = reader.client, Mismatches(world, reader)

    def probe(held: Held) -> tuple[httpx.Response, list[httpx.Response], httpx.Response]:
        path = f"/{held.res_type}/{held.res_id}"
        vreads = [fhir.get(f"{path}/_history/{v}") for v in range(1, held.versions + 1)]
        return fhir.get(path), vreads, fhir.get(f"{path}/_history")

    # Other organisations' data; the reader's own (always permitted) is checked on every other
    # path of the matrix.
    visited = [(p, h) for p, h in _visited(world, reader) if h.holder != reader.org]
    for (patient, held), (read, vreads, history) in zip(
        visited, _parallel(probe, [held for _patient, held in visited]), strict=True
    ):
        permitted = world.permits(reader, held)
        status = 200 if permitted else 404
        seen.expect(
            read.status_code == status and (not permitted or read.json()["id"] == held.res_id),
            "read",
            patient,
            f"{read.status_code} for {seen.about(held)}",
        )
        for version, vread in enumerate(vreads, 1):
            seen.expect(
                vread.status_code == status,
                f"vread {version}",
                patient,
                f"{vread.status_code} for {seen.about(held)}",
            )
        seen.expect(
            history.status_code == status,
            "history",
            patient,
            f"{history.status_code} for {seen.about(held)}",
        )
        if permitted and history.status_code == 200:
            bundle = history.json()
            versions = sorted(_version(e) for e in bundle.get("entry", []))
            seen.expect(
                bundle["total"] == held.versions and versions == list(range(1, held.versions + 1)),
                "history",
                patient,
                f"versions {versions} (total {bundle['total']}) of {seen.about(held)}",
            )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_document_content_is_delivered_exactly_where_permitted(world, name):
    """ITI-68: the raw content of each document's Binary, in its own media type."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)
    for patient, held in _visited(world, reader):
        if held.res_type != "Binary":
            continue
        got = reader.client.get(f"/Binary/{held.res_id}", headers={"Accept": "application/pdf"})
        if world.permits(reader, held):
            seen.expect(
                got.status_code == 200 and got.content == held.body,
                "ITI-68",
                patient,
                f"{got.status_code} without the content of {seen.about(held)}",
            )
        else:
            seen.expect(
                got.status_code == 404 and (held.body or b"-") not in got.content,
                "ITI-68",
                patient,
                f"{got.status_code} for {seen.about(held)}",
            )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_searches_page_and_count_exactly_the_permitted_resources(world, name):
    """Per patient and type: the search by BSN in pages of two, every ``next`` followed (the
    union of the pages is exactly the permitted set; the total a page states, at least the
    last one, its size), its first page with ``_total=accurate``, and its ``_summary=count``."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)

    def search(job: tuple[Patient, str]) -> tuple[list[str], set[int], int | None]:
        patient, res_type = job
        query = {SEARCHED[res_type]: f"{BSN}|{patient.bsn}"}
        found: list[str] = []
        totals = set()
        for bundle in _pages(reader.client, f"/{res_type}", query | {"_count": "2"}):
            totals.add(bundle.get("total"))
            found += [e["resource"]["id"] for e in bundle.get("entry", [])]
        totals.discard(None)  # a page that more matches follow states none
        accurate = {"_count": "2", "_total": "accurate"}
        totals.add(reader.client.get(f"/{res_type}", params=query | accurate).json()["total"])
        counted = reader.client.get(f"/{res_type}", params=query | {"_summary": "count"})
        return found, totals, counted.json().get("total")

    jobs = [(p, t) for p in world.patients if p.index in reader.patients for t in SEARCHED]
    for (patient, res_type), (found, totals, counted) in zip(
        jobs, _parallel(search, jobs), strict=True
    ):
        helds = world.of(patient, res_type)
        expected = {h.res_id for h in helds if world.permits(reader, h)}
        hidden = {h.res_id: seen.about(h) for h in helds if h.res_id not in expected}
        path = f"{res_type}?{SEARCHED[res_type]}&_count=2"
        leaked = [hidden[i] for i in found if i in hidden]
        missing = [seen.about(h) for h in helds if h.res_id in expected - set(found)]
        seen.expect(not leaked, path, patient, f"returned {leaked}")
        seen.expect(not missing, path, patient, f"hid {missing}")
        seen.expect(len(found) == len(set(found)), path, patient, f"repeated {found}")
        seen.expect(
            totals == {len(expected)}, path, patient, f"total {totals}, permitted {len(expected)}"
        )
        seen.expect(
            counted == len(expected),
            f"{res_type}?{SEARCHED[res_type]}&_summary=count",
            patient,
            f"counted {counted}, permitted {len(expected)}",
        )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_search_by_id_over_all_patients_returns_only_permitted_resources(world, name):
    """``_id`` naming every resource of a type, all patients at once, and its count."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)
    for res_type in HELD_TYPES:
        helds = [h for _p, h in _visited(world, reader) if h.res_type == res_type]
        expected = {h.res_id for h in helds if world.permits(reader, h)}
        query = {"_id": ",".join(h.res_id for h in helds), "_count": "1000"}
        answer = reader.client.post(f"/{res_type}/_search", data=query)
        assert answer.status_code == 200, answer.text
        bundle = answer.json()
        found = {e["resource"]["id"] for e in bundle.get("entry", [])}
        by_id = {h.res_id: h for h in helds}
        for res_id in found ^ expected:
            held = by_id[res_id]
            what = "returned" if res_id in found else "hid"
            seen.expect(
                False, f"{res_type}?_id", world.patients[held.patient], f"{what} {seen.about(held)}"
            )
        seen.expect(
            bundle["total"] == len(expected),
            f"{res_type}?_id",
            None,
            f"total {bundle['total']}, permitted {len(expected)}",
        )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_include_and_revinclude_bring_in_only_permitted_resources(world, name):
    """``Observation?…&_include=Observation:subject`` includes a subject only when both it and
    an observation pointing at it are permitted; ``Patient?…&_revinclude=Observation:subject``
    likewise the other way round."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)

    def compare(
        path: str,
        patient: Patient,
        bundle: dict[str, Any],
        match: set[str],
        include: set[str],
        candidates: dict[str, Held],
    ) -> None:
        modes: dict[str, set[str]] = {"match": set(), "include": set()}
        for entry in bundle.get("entry", []):
            modes[entry["search"]["mode"]].add(entry["resource"]["id"])
        seen.expect(
            modes["match"] == match,
            path,
            patient,
            f"matched {sorted(modes['match'])}, permitted {sorted(match)}",
        )
        for res_id in modes["include"] - include:
            what = seen.about(candidates[res_id]) if res_id in candidates else res_id
            seen.expect(False, path, patient, f"included {what}")
        for res_id in include - modes["include"]:
            seen.expect(False, path, patient, f"left out {seen.about(candidates[res_id])}")

    for patient in world.patients:
        if patient.index not in reader.patients:
            continue
        patients = {h.res_id: h for h in world.of(patient, "Patient")}
        observations = {h.res_id: h for h in world.of(patient, "Observation")}
        open_patients = {i for i, h in patients.items() if world.permits(reader, h)}
        open_observations = {i for i, h in observations.items() if world.permits(reader, h)}
        subject = {
            i: h.content["subject"]["reference"].removeprefix("Patient/")
            for i, h in observations.items()
        }
        by_bsn = {"_count": "100"}
        included = reader.client.get(
            "/Observation",
            params=by_bsn
            | {"patient.identifier": f"{BSN}|{patient.bsn}", "_include": "Observation:subject"},
        )
        compare(
            "Observation?patient.identifier&_include=Observation:subject",
            patient,
            included.json(),
            open_observations,
            {subject[i] for i in open_observations} & open_patients,
            patients,
        )
        revincluded = reader.client.get(
            "/Patient",
            params=by_bsn
            | {"identifier": f"{BSN}|{patient.bsn}", "_revinclude": "Observation:subject"},
        )
        compare(
            "Patient?identifier&_revinclude=Observation:subject",
            patient,
            revincluded.json(),
            open_patients,
            {i for i in open_observations if subject[i] in open_patients},
            observations,
        )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_batch_and_transaction_reads_follow_the_decision(world, name):
    """A batch of GETs per patient (each resource and a search); a transaction GETting what is
    permitted succeeds whole, one GETting something denied fails whole (404)."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)
    for patient in world.patients:
        if patient.index not in reader.patients:
            continue
        helds = [h for h in world.held if h.patient == patient.index]
        gets = [{"request": {"method": "GET", "url": f"{h.res_type}/{h.res_id}"}} for h in helds]
        search = {
            "request": {
                "method": "GET",
                "url": f"Observation?patient.identifier={BSN}|{patient.bsn}",
            }
        }
        answer = reader.client.post(
            "", json={"resourceType": "Bundle", "type": "batch", "entry": [*gets, search]}
        )
        assert answer.status_code == 200, answer.text
        *singles, searched = answer.json()["entry"]
        for held, entry in zip(helds, singles, strict=True):
            status = entry["response"]["status"].split()[0]
            expected = "200" if world.permits(reader, held) else "404"
            seen.expect(
                status == expected, "batch GET", patient, f"{status} for {seen.about(held)}"
            )
            if status == "200":
                seen.expect(
                    entry["resource"]["id"] == held.res_id,
                    "batch GET",
                    patient,
                    f"another resource for {seen.about(held)}",
                )
        observations = {
            h.res_id for h in world.of(patient, "Observation") if world.permits(reader, h)
        }
        found = {e["resource"]["id"] for e in searched["resource"].get("entry", [])}
        seen.expect(
            found == observations and searched["resource"]["total"] == len(observations),
            "batch search",
            patient,
            f"found {sorted(found)}, permitted {sorted(observations)}",
        )

        permitted = [h for h in helds if world.permits(reader, h)]
        denied = [h for h in helds if not world.permits(reader, h)]
        if permitted:
            entries = [
                {"request": {"method": "GET", "url": f"{h.res_type}/{h.res_id}"}} for h in permitted
            ]
            answer = reader.client.post(
                "",
                json={"resourceType": "Bundle", "type": "transaction", "entry": [*entries, search]},
            )
            seen.expect(
                answer.status_code == 200,
                "transaction GET",
                patient,
                f"{answer.status_code} for permitted {[seen.about(h) for h in permitted]}",
            )
            if answer.status_code == 200:
                *singles, searched = answer.json()["entry"]
                got = [e["resource"]["id"] for e in singles]
                seen.expect(
                    got == [h.res_id for h in permitted],
                    "transaction GET",
                    patient,
                    f"returned {got}",
                )
                found = {e["resource"]["id"] for e in searched["resource"].get("entry", [])}
                seen.expect(
                    found == observations,
                    "transaction search",
                    patient,
                    f"found {sorted(found)}, permitted {sorted(observations)}",
                )
        if denied:
            held = denied[patient.index % len(denied)]
            entries = [{"request": {"method": "GET", "url": f"{held.res_type}/{held.res_id}"}}]
            answer = reader.client.post(
                "", json={"resourceType": "Bundle", "type": "transaction", "entry": entries}
            )
            seen.expect(
                answer.status_code == 404 and answer.json()["resourceType"] == "OperationOutcome",
                "transaction GET",
                patient,
                f"{answer.status_code} for {seen.about(held)}",
            )
    seen.check()


@pytest.mark.parametrize("name", READERS)
def test_type_and_system_history_list_only_permitted_versions(world, name):
    """Type-level and system ``_history`` over every patient: each version listed exactly when
    its resource is permitted, totals included."""
    reader = world.readers[name]
    seen = Mismatches(world, reader)
    known = {h.key for h in world.held}

    def listed(path: str) -> tuple[dict[tuple[str, str], list[int]], set[int]]:
        versions: dict[tuple[str, str], list[int]] = {}
        totals = set()
        for bundle in _pages(reader.client, path, {"_count": "250"}):
            totals.add(bundle["total"])
            for entry in bundle.get("entry", []):
                res_type, res_id = entry["fullUrl"].rsplit("/", 2)[-2:]
                version = _version(entry)
                versions.setdefault((res_type, res_id), []).append(version)
        return versions, totals

    def compare(path: str, helds: list[Held], listed: dict[tuple[str, str], list[int]]) -> None:
        for held in helds:
            got = sorted(listed.get(held.key, []))
            want = list(range(1, held.versions + 1)) if world.permits(reader, held) else []
            seen.expect(
                got == want,
                path,
                world.patients[held.patient],
                f"versions {got}, expected {want}, of {seen.about(held)}",
            )

    for res_type in HELD_TYPES:
        path = f"{res_type}/_history"
        versions, totals = listed(f"/{path}")
        helds = [h for h in world.held if h.res_type == res_type]
        compare(path, helds, versions)
        permitted = sum(h.versions for h in helds if world.permits(reader, h))
        seen.expect(totals == {permitted}, path, None, f"total {totals}, permitted {permitted}")
        strays = [key for key in versions if key not in known]
        seen.expect(not strays, path, None, f"listed resources of no patient: {strays}")
    versions, _totals = listed("/_history")
    compare("_history", world.held, versions)
    seen.check()


def test_the_matrix_meets_every_rule_of_the_decision(world):
    """The matrix is not vacuous: each reader is both permitted and denied somewhere, and every
    basis consent.decide can give for these facts occurs."""
    rules = {}
    for reader in world.readers.values():
        outcomes = {world.permits(reader, h) for _p, h in _visited(world, reader)}
        assert outcomes == ({True, False} if reader.org != D else {False}), reader.name
        for _p, held in _visited(world, reader):
            basis = world.decision(reader, held).basis
            rules.setdefault(basis.rule.split(":")[0], 0)
            rules[basis.rule.split(":")[0]] += 1
    assert set(rules) >= {
        "own-organisation",
        "consent",
        "emergency",
        "no-agreement",
        "agreement-not-covering",
        "agreement-expired",
        "no-consent",
        "consent-deny",
        "consent-expired",
        "default-deny",
    }, rules


# -- what the matrix does not vary: versions that differ, and date-only clinical dates -----------
#
# Two organisations outside the matrix (no agreement with A-D, so the matrix is untouched): E
# holds, F has an agreement with E for results only.

E, F = "90000705", "90000706"


@pytest.fixture(scope="module")
def pair(server: Any) -> Iterator[tuple[httpx.Client, httpx.Client, list[Agreement]]]:
    holder = server.hospital(E, "Eigen Ziekenhuis")
    lab = server.hospital(F, "Uitslagen Laboratorium")
    agreement = _agreement(server.agreement(E, F, categories=("results",)), (E, F), "results")
    with server.client(holder) as e, server.client(lab) as f:
        yield e, f, [agreement]


def _decide_for_f(
    agreements: list[Agreement], consents: list[PatientConsent], bsn: str, resource: dict[str, Any]
) -> bool:
    request = AccessRequest(
        actor_org=F,
        actor_org_types=frozenset(),
        actor_id=f"system:{F}",
        actor_role="system",
        holder_org=E,
        patient=bsn,
        purpose="TREAT",
        action="read",
        resource_type="Observation",
        categories=categories_of("Observation", resource),
        at=datetime.now(UTC),
        data_date=_moment(resource.get("effectiveDateTime")),
    )
    return decide(request, PolicyFacts(consents=consents, agreements=agreements)).permit


_BSNS_OUTSIDE = _bsns()
for _ in range(PATIENTS + 10):  # past the matrix's own BSNs
    next(_BSNS_OUTSIDE)


def _patient_of_e(
    e: httpx.Client, rules: dict[str, Any] | None
) -> tuple[str, str, list[PatientConsent]]:
    bsn = next(_BSNS_OUTSIDE)
    answer = e.post(
        "/Patient", json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]}
    )
    assert answer.status_code == 201, answer.text
    consents = []
    if rules is not None:
        resource = consent_json("c", rules, patient=bsn)
        resource.pop("id")
        resource.pop("organization")
        recorded = e.post("/Consent", json=resource)
        assert recorded.status_code == 201, recorded.text
        consents.append(parse_consent(recorded.json()))
    return answer.json()["id"], bsn, consents


def _observation(subject: str, category: str, when: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
        "code": {"text": "x"},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": when,
        "valueString": value,
    }


@pytest.mark.parametrize("change", ["category", "data date", "patient"])
def test_each_version_is_judged_by_its_own_patient_category_and_date(pair, change):
    """Version 1 is denied to F and version 2 (the current one) permitted: F may read version 2,
    never version 1, by vread, instance history or type history."""
    e, f, agreements = pair
    if change == "category":  # a social-history observation became a lab result
        patient = before = _patient_of_e(e, provision("permit"))
        first = _observation(patient[0], "social-history", "2023-06-15", "10 units a day")
    elif change == "data date":  # its date moved into the consent's data period
        patient = before = _patient_of_e(e, provision("permit", data_period=DATA_PERIOD))
        first = _observation(patient[0], "laboratory", "2019-06-15", "Hb 6.1")
    else:  # moved from a patient without consent to one with
        before = _patient_of_e(e, None)
        patient = _patient_of_e(e, provision("permit"))
        first = _observation(before[0], "laboratory", "2023-06-15", "HIV positive")
    second = _observation(patient[0], "laboratory", "2023-06-15", "Hb 8.1")
    assert not _decide_for_f(agreements, before[2], before[1], first)
    assert _decide_for_f(agreements, patient[2], patient[1], second)
    created = e.post("/Observation", json=first)
    assert created.status_code == 201, created.text
    res_id = created.json()["id"]
    assert e.put(f"/Observation/{res_id}", json=second | {"id": res_id}).status_code == 200

    assert f.get(f"/Observation/{res_id}").status_code == 200
    history = f.get(f"/Observation/{res_id}/_history").json().get("entry", [])
    everything = f.get("/Observation/_history", params={"_count": "1000"}).json().get("entry", [])
    shown = {
        "vread 1": f.get(f"/Observation/{res_id}/_history/1").status_code,
        "history": sorted(_version(x) for x in history),
        "type history": sorted(_version(x) for x in everything if x["fullUrl"].endswith(res_id)),
    }
    assert shown == {"vread 1": 404, "history": [2], "type history": [2]}


@pytest.mark.parametrize(
    "data_period",
    [("2022-01-01T00:30:00+01:00", None), (None, "2022-01-01T00:30:00+01:00")],
    ids=["starts-00:30", "ends-00:30"],
)
def test_a_date_only_clinical_date_is_its_dutch_day_as_consent_reads_it(pair, data_period):
    e, f, agreements = pair
    patient, bsn, consents = _patient_of_e(e, provision("permit", data_period=data_period))
    resource = _observation(patient, "laboratory", "2022-01-01", "Hb 7.9")
    created = e.post("/Observation", json=resource)
    assert created.status_code == 201, created.text
    permitted = _decide_for_f(agreements, consents, bsn, resource)
    assert f.get(f"/Observation/{created.json()['id']}").status_code == (200 if permitted else 404)
