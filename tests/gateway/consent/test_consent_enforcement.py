"""Consent and agreements decide, on every read path, what one hospital sees of another's data;
a revocation holds from the next request in every gateway process; emergencies are the one
exception, and the DPO can see why."""

from __future__ import annotations

import base64
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from harness import LiveServer, Settings, valid_bsns

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
HOLDER, PARTNER, STRANGER = "90000601", "90000602", "90000603"
LAB = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


BSNS = valid_bsns(999910000)  # one per test, so that none share a patient


@pytest.fixture(scope="module")
def hospitals(server):
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    stranger = server.hospital(STRANGER, "Vreemd Ziekenhuis")
    server.agreement(HOLDER, PARTNER)  # the stranger has no agreement with the holder
    return holder, partner, stranger


@pytest.fixture
def record(server, hospitals):
    """A fresh patient of the holder with a lab result and a problem; returns the ids."""
    return new_record(server, hospitals)


def new_record(server, hospitals):
    holder = hospitals[0]
    bsn = next(BSNS)
    with server.client(holder) as fhir:
        patient = fhir.post(
            "/Patient",
            json={"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]},
        ).json()
        subject = {"reference": f"Patient/{patient['id']}"}
        result = fhir.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "category": [LAB],
                "code": {"text": "Hb"},
                "subject": subject,
                "effectiveDateTime": "2025-06-01T10:00:00+02:00",
            },
        ).json()
        problem = fhir.post(
            "/Condition",
            json={"resourceType": "Condition", "code": {"text": "Astma"}, "subject": subject},
        ).json()
    return {"bsn": bsn, "patient": patient["id"], "result": result["id"], "problem": problem["id"]}


def consent(server, hospital, record, rules, consent_id="c", **kw):
    """The holder records the patient's consent through the FHIR API."""
    resource = consent_json(consent_id, rules, patient=record["bsn"], **kw)
    resource.pop("id")
    resource.pop("organization")
    with server.client(hospital) as fhir:
        response = fhir.post("/Consent", json=resource)
    assert response.status_code == 201, response.text
    return response.json()


def seen(server, hospital, record):
    """What ``hospital`` sees of the record, through each read path."""
    with server.client(hospital) as fhir:
        by_bsn = fhir.get(
            "/Observation", params={"patient.identifier": f"{BSN}|{record['bsn']}"}
        ).json()
        problems = fhir.get(
            "/Condition", params={"patient.identifier": f"{BSN}|{record['bsn']}"}
        ).json()
        counted = fhir.get(
            "/Observation",
            params={"patient.identifier": f"{BSN}|{record['bsn']}", "_summary": "count"},
        ).json()
        return {
            "read": fhir.get(f"/Observation/{record['result']}").status_code,
            "vread": fhir.get(f"/Observation/{record['result']}/_history/1").status_code,
            "history": fhir.get(f"/Observation/{record['result']}/_history").status_code,
            "search": by_bsn["total"],
            "count": counted["total"],
            "problems": problems["total"],
            "patient": fhir.get(f"/Patient/{record['patient']}").status_code,
        }


NOTHING = {
    "read": 404,
    "vread": 404,
    "history": 404,
    "search": 0,
    "count": 0,
    "problems": 0,
    "patient": 404,
}
EVERYTHING = {
    "read": 200,
    "vread": 200,
    "history": 200,
    "search": 1,
    "count": 1,
    "problems": 1,
    "patient": 200,
}


def test_without_consent_a_partner_sees_nothing_though_an_agreement_exists(
    server, hospitals, record
):
    assert seen(server, hospitals[1], record) == NOTHING


def test_a_network_consent_opens_everything_to_the_partner_with_an_agreement(
    server, hospitals, record
):
    holder, partner, stranger = hospitals
    consent(server, holder, record, provision("permit"))
    assert seen(server, partner, record) == EVERYTHING
    assert seen(server, stranger, record) == NOTHING  # consent without agreement is not enough


def test_a_category_limited_consent_opens_only_that_category(server, hospitals, record):
    holder, partner, _ = hospitals
    consent(server, holder, record, provision("permit", categories=["results"]))
    view = seen(server, partner, record)
    assert (view["read"], view["search"], view["problems"], view["patient"]) == (200, 1, 0, 404)


def test_a_deny_for_one_organisation_wins_over_a_permit(server, hospitals, record):
    holder, partner, _ = hospitals
    consent(server, holder, record, provision("permit"), "c1")
    consent(server, holder, record, provision("deny", to=[PARTNER]), "c2")
    assert seen(server, partner, record) == NOTHING


def test_a_deny_recorded_at_the_same_moment_as_a_permit_is_never_lost(server, hospitals):
    """Two Consents of one patient written concurrently each recompute the patient's consent
    rows; the one that commits last must see the other's (PostgreSQL lost the deny 77 in 100)."""
    holder, partner, _ = hospitals
    patients = [new_record(server, hospitals) for _ in range(12)]

    def post_both(patient):
        with ThreadPoolExecutor(2) as pool:
            list(
                pool.map(
                    lambda rules: consent(server, holder, patient, rules[0], rules[1]),
                    [(provision("permit"), "c1"), (provision("deny", to=[PARTNER]), "c2")],
                )
            )

    for patient in patients:
        post_both(patient)
    with server.client(partner) as fhir:
        for patient in patients:
            found = fhir.get(
                "/Observation", params={"patient.identifier": f"{BSN}|{patient['bsn']}"}
            )
            assert found.json()["total"] == 0, patient


def test_include_and_revinclude_never_bring_in_what_is_not_permitted(server, hospitals, record):
    holder, partner, _ = hospitals
    consent(server, holder, record, provision("permit", categories=["results"]))
    with server.client(partner) as fhir:
        included = fhir.get(
            "/Observation",
            params={
                "patient.identifier": f"{BSN}|{record['bsn']}",
                "_include": "Observation:subject",
            },
        ).json()
        assert {e["resource"]["resourceType"] for e in included["entry"]} == {"Observation"}
        assert (
            fhir.get(
                "/Patient", params={"_id": record["patient"], "_revinclude": "Observation:subject"}
            ).json()["total"]
            == 0
        )


def test_revocation_holds_from_the_next_request_in_every_gateway_process(server, hospitals, record):
    holder, partner, _ = hospitals
    given = consent(server, holder, record, provision("permit"))
    second = LiveServer(
        Settings(data_dir=server.settings.data_dir, database_url=server.settings.database_url),
        server.backend,
    ).start()
    try:
        with second.client(partner) as other:
            assert other.get(f"/Observation/{record['result']}").status_code == 200
            with server.client(holder) as fhir:
                revoked = fhir.put(f"/Consent/{given['id']}", json=given | {"status": "inactive"})
                assert revoked.status_code == 200, revoked.text
            assert other.get(f"/Observation/{record['result']}").status_code == 404
            assert (
                other.get(
                    "/Observation", params={"patient.identifier": f"{BSN}|{record['bsn']}"}
                ).json()["total"]
                == 0
            )
    finally:
        second.stop()


def test_a_consent_closes_at_its_end_also_to_a_partner_that_was_reading(server, hospitals, record):
    """The gateway keeps each actor's visibility condition between requests; the time it
    judges consent periods at is read when each request runs, not when that was built."""
    import time
    from datetime import UTC, datetime, timedelta

    holder, partner, _ = hospitals
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    consent(server, holder, record, provision("permit", period=(None, end.isoformat())))
    assert seen(server, partner, record) == EVERYTHING
    time.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds()) + 1.5)
    assert seen(server, partner, record) == NOTHING


def test_an_ended_agreement_closes_what_the_consent_opened(server, hospitals, record, tmp_path):
    from datetime import date

    holder, _partner, _ = hospitals
    third = server.hospital("90000604", "Kortstondig Ziekenhuis")
    agreement = server.agreement(HOLDER, third.ura)
    consent(server, holder, record, provision("permit"))
    with server.client(third) as fhir:
        assert fhir.get(f"/Observation/{record['result']}").status_code == 200
    _end_agreement(server, agreement, date.today().replace(year=date.today().year - 1))
    with server.client(third) as fhir:
        assert fhir.get(f"/Observation/{record['result']}").status_code == 404


def _end_agreement(server, agreement_id, on):
    import asyncio

    from gateway.agreements import end_agreement
    from gateway.service.console import ConsoleChange
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    async def run():
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


def test_a_malformed_or_unenforceable_consent_is_refused_not_ignored(server, hospitals, record):
    holder = hospitals[0]
    bad = consent_json("x", provision("permit", purposes=["NOTAPURPOSE"]), patient=record["bsn"])
    bad.pop("id")
    with server.client(holder) as fhir:
        refused = fhir.post("/Consent", json=bad)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"][0].startswith("Consent.provision")


def test_break_the_glass_opens_one_patient_to_one_clinician_for_a_while(server, hospitals, record):
    _holder, partner, _ = hospitals
    with server.person(partner, f"dr.spoed.{record['bsn']}", "clinician") as clinician:
        assert clinician.get(f"/Observation/{record['result']}").status_code == 404
        parameters = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "patient", "valueIdentifier": {"system": BSN, "value": record["bsn"]}},
                {
                    "name": "reason",
                    "valueString": "Bewusteloos op de SEH, geen toestemming te vragen",
                },
            ],
        }
        declared = clinician.post("/Patient/$break-the-glass", json=parameters)
        assert declared.status_code == 201, declared.text
        window = {p["name"]: p for p in declared.json()["parameter"]}
        assert window["end"]["valueInstant"] > window["start"]["valueInstant"]
        assert clinician.get(f"/Observation/{record['result']}").status_code == 200
        no_reason = parameters | {"parameter": parameters["parameter"][:1]}
        assert clinician.post("/Patient/$break-the-glass", json=no_reason).status_code == 422
    with server.client(partner) as integration:  # a system cannot break the glass
        assert integration.post("/Patient/$break-the-glass", json=parameters).status_code == 403
        assert integration.get(f"/Observation/{record['result']}").status_code == 404


def test_the_dpo_sees_who_may_see_what_and_why(server, hospitals, record):
    holder, _partner, _ = hospitals
    consent(server, holder, record, provision("permit", categories=["results"]))
    with server.person(holder, f"dpo.{record['bsn']}", "dpo") as dpo:
        answer = dpo.get(f"/Patient/{record['patient']}/$access")
        assert answer.status_code == 200, answer.text
    lines = [{p["name"]: p for p in line["part"]} for line in answer.json()["parameter"]]
    by_key = {(x["recipient"]["valueString"], x["category"]["valueCode"]): x for x in lines}
    results = by_key[(PARTNER, "result-observations")]
    assert results["permitted"]["valueBoolean"] is True
    assert results["agreement"]["valueString"]
    assert results["consent"]["valueReference"]["reference"].startswith("Consent/")
    problems = by_key[(PARTNER, "problems")]
    assert problems["permitted"]["valueBoolean"] is False
    stranger = by_key[(STRANGER, "result-observations")]
    assert stranger["permitted"]["valueBoolean"] is False
    assert stranger["rule"]["valueString"] == "no-agreement"
    with server.client(holder) as integration:
        assert integration.get(f"/Patient/{record['patient']}/$access").status_code == 403


def test_a_dpo_learns_nothing_of_what_other_organisations_hold(server, hospitals, record):
    """The stranger registers the same BSN; its DPO's overview covers only its own data, not
    which categories the holder keeps or whom the patient's consent opens them to."""
    _holder, _partner, stranger = hospitals
    with server.client(stranger) as integration:
        own = integration.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": BSN, "value": record["bsn"]}],
            },
        ).json()
    with server.person(stranger, f"dpo.s.{record['bsn']}", "dpo") as dpo:
        answer = dpo.get(f"/Patient/{own['id']}/$access")
    assert answer.status_code == 200, answer.text
    holders = {
        part["valueString"]
        for line in answer.json().get("parameter", [])
        for part in line["part"]
        if part["name"] == "holder"
    }
    assert holders <= {STRANGER}


def test_a_push_needs_an_agreement_and_no_objection(server, hospitals, record):
    from gateway.exchange.compose import provide_document_bundle

    holder, _partner, _stranger = hospitals

    def push(to):
        bundle = provide_document_bundle(
            content=b"%PDF-1.4 brief",
            content_type="application/pdf",
            bsn=record["bsn"],
            sender=HOLDER,
            recipients=[to],
        )
        with server.client(holder) as fhir:
            return fhir.post("", json=bundle)

    refused = push(STRANGER)
    assert refused.status_code == 403
    assert "no agreement" in refused.json()["issue"][0]["diagnostics"]
    assert push(PARTNER).status_code == 200  # a directed referral needs no explicit permit
    consent(server, holder, record, provision("deny", to=[PARTNER]))
    objected = push(PARTNER)
    assert objected.status_code == 403
    assert "forbids" in objected.json()["issue"][0]["diagnostics"]


def upload(fhir, context: str | None, content: bytes = b"%PDF-1.4 brief") -> str:
    """A raw upload (ITI-68's form) with an X-Security-Context header; the Binary's id."""
    headers = {"Content-Type": "application/pdf"}
    if context is not None:
        headers["X-Security-Context"] = context
    created = fhir.post("/Binary", content=content, headers=headers)
    assert created.status_code == 201, created.text
    return created.headers["Location"].split("/Binary/")[1].split("/")[0]


def pdf_status(server, hospital, binary: str) -> int:
    with server.client(hospital) as fhir:
        return fhir.get(f"/Binary/{binary}", headers={"Accept": "application/pdf"}).status_code


def document_about(patient: str, status: str = "current") -> dict:
    """A DocumentReference about ``patient`` whose content is sent on its own."""
    return {
        "resourceType": "DocumentReference",
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "content": [{"attachment": {"contentType": "application/pdf"}}],
    }


def test_a_binary_sent_on_its_own_is_opened_by_the_consent_of_its_security_context(
    server, hospitals, record
):
    """A Binary names no patient: without a securityContext no consent ever opens it (deny by
    default); with one (the element, or the X-Security-Context header of a raw upload, FHIR R4)
    it is the data of that context's patient, opened and closed with it."""
    holder, partner, stranger = hospitals
    pdf = b"%PDF-1.4 ontslagbrief"
    with server.client(holder) as fhir:
        letter = fhir.post("/DocumentReference", json=document_about(record["patient"])).json()
        by_patient = upload(fhir, f"Patient/{record['patient']}", pdf)
        by_letter = upload(fhir, f"DocumentReference/{letter['id']}", pdf)
        bare = upload(fhir, None, pdf)
        element = fhir.post(
            "/Binary",
            json={
                "resourceType": "Binary",
                "contentType": "application/pdf",
                "securityContext": {"reference": f"DocumentReference/{letter['id']}"},
                "data": base64.b64encode(pdf).decode(),
            },
        )
        assert element.status_code == 201, element.text
        binaries = [by_patient, by_letter, bare, element.json()["id"]]

    def retrieved(hospital) -> list[int]:
        return [pdf_status(server, hospital, b) for b in binaries]

    assert retrieved(partner) == [404, 404, 404, 404]  # no consent yet
    consent(server, holder, record, provision("permit"))
    assert retrieved(partner) == [200, 200, 404, 200]
    assert retrieved(stranger) == [404, 404, 404, 404]  # no agreement
    assert retrieved(holder) == [200, 200, 200, 200]
    with server.client(partner) as fhir:
        got = fhir.get(f"/Binary/{by_letter}", headers={"Accept": "application/pdf"})
    assert got.content == pdf


def test_a_security_context_not_of_the_sender_opens_nothing(server, hospitals, record):
    """Another organisation's resource, an unknown one and one on another server are accepted
    as a context (the R4 Binary example names one that is not there) but give no patient: the
    Binary stays its owner's alone, and the answer tells nothing of what exists."""
    holder, partner, _ = hospitals
    consent(server, holder, record, provision("permit"))
    with server.client(partner) as fhir:
        theirs = fhir.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "Hb"},
                "subject": {"reference": f"Patient/{record['patient']}"},
            },
        ).json()["id"]
    with server.client(holder) as fhir:
        binaries = [
            upload(fhir, context)
            for context in (
                f"Observation/{theirs}",
                "Observation/does-not-exist",
                f"http://elders.example.org/fhir/Patient/{record['patient']}",
                f"Patient/{record['patient']}",  # the one that opens it
            )
        ]
    assert [pdf_status(server, partner, b) for b in binaries] == [404, 404, 404, 200]
    assert [pdf_status(server, holder, b) for b in binaries] == [200, 200, 200, 200]


def test_a_binary_follows_its_document_when_it_moves_or_goes(server, hospitals, record):
    """FHIR R4: the security context governs access to the Binary. A document moved to another
    patient takes its content along (out of the first patient's consent), one marked
    entered-in-error is served to nobody, and one deleted closes its content too."""
    holder, partner, _ = hospitals
    other = new_record(server, hospitals)  # a patient without consent
    consent(server, holder, record, provision("permit"))

    with server.client(holder) as fhir:
        letter = fhir.post("/DocumentReference", json=document_about(record["patient"])).json()
        binary = upload(fhir, f"DocumentReference/{letter['id']}")

        def put(body: dict) -> None:
            answer = fhir.put(
                f"/DocumentReference/{letter['id']}", json=body | {"id": letter["id"]}
            )
            assert answer.status_code == 200, answer.text

        seen = [pdf_status(server, partner, binary)]
        put(document_about(other["patient"]))
        seen.append(pdf_status(server, partner, binary))
        put(document_about(record["patient"]))
        seen.append(pdf_status(server, partner, binary))
        put(document_about(record["patient"], "entered-in-error"))
        seen.append(pdf_status(server, partner, binary))
        put(document_about(record["patient"]))
        seen.append(pdf_status(server, partner, binary))
        assert fhir.delete(f"/DocumentReference/{letter['id']}").status_code == 204
        seen.append(pdf_status(server, partner, binary))
    assert seen[:5] == [200, 404, 200, 410, 200]
    assert seen[5] in (404, 410)  # not served: hidden, or gone


def test_a_binary_before_its_document_in_a_transaction_follows_it(server, hospitals, record):
    """The order of a transaction's entries does not matter (FHIR R4 transaction rules): a
    Binary whose security context is a DocumentReference further on takes its patient."""
    holder, partner, _ = hospitals
    consent(server, holder, record, provision("permit"))
    letter = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "securityContext": {"reference": letter},
                    "data": base64.b64encode(b"%PDF-1.4 brief").decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": letter,
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": {"reference": f"Patient/{record['patient']}"},
                    "content": [{"attachment": {"contentType": "application/pdf"}}],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }
    with server.client(holder) as fhir:
        answer = fhir.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    binary = answer.json()["entry"][0]["response"]["location"].split("/")[1]
    assert pdf_status(server, partner, binary) == 200


def test_a_count_judges_agreements_and_categories_once_not_for_each_candidate(server, hospitals):
    """Counting a broad search judges consent for every other hospital's match. The agreements
    and the category tree it checks are the same for all of them: PostgreSQL must build them
    once per statement (a hashed subplan), not join them again for each candidate, which cost
    the count a fifth of its time (bench/bench_consent_search.py, broad ``_total=accurate``)."""
    if server.backend != "postgresql":
        pytest.skip("a PostgreSQL plan")
    from gateway.fhir.search import parse_search
    from gateway.fhir.search_params import registry
    from gateway.policy.information import READ_PURPOSE
    from gateway.store.database import Database
    from gateway.store.search_shapes import search_statement
    from gateway.store.search_sql import ConsentScope, bound_visibility

    holder, partner, _ = hospitals
    for _ in range(4):
        consent(server, holder, new_record(server, hospitals), provision("permit"))
    query = parse_search(
        "Observation",
        [("category", "laboratory"), ("_total", "accurate")],
        registry(),
        default_count=20,
        max_count=1000,
        strict=True,
        own_base="http://gateway/fhir",
    )
    scope = ConsentScope(partner.client_id, READ_PURPOSE, opt_out=False)
    visible, values = bound_visibility(PARTNER, "network", scope, addressed=True)
    statement, bound = search_statement("counted", query, visible, values)
    db = Database(server.settings.database_url, threads=1)
    try:
        with db.engine.connect() as conn:
            compiled = statement.compile(dialect=db.engine.dialect)
            (plan,) = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiled),
                compiled.construct_params(bound),
            ).scalar_one()
            total = conn.execute(statement, bound).first().total
    finally:
        db.engine.dispose()

    def scans(node):
        yield node
        for child in node.get("Plans", []):
            yield from scans(child)

    # The matches and their count; the page's rows then read their basis one by one.
    (counting,) = (n for n in scans(plan["Plan"]) if n["Node Type"] == "WindowAgg")
    loops = {
        (n["Relation Name"], n["Actual Loops"])
        for n in scans(counting)
        if n.get("Relation Name") in ("agreement_grants", "data_category_lineage")
    }
    assert total >= 4  # the consented results were counted
    assert {relation for relation, _ in loops} == {"agreement_grants", "data_category_lineage"}
    assert all(n <= 1 for _, n in loops), loops
