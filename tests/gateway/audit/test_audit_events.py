"""Every kind of access leaves an AuditEvent (IHE BALP / NEN 7513) that the DPO of the
organisation concerned can find: who, which organisation and role, which patient and data,
on which basis, with the caller's X-Request-Id and X-Correlation-Id."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from harness import LOGIN_REDIRECT, PERSON_PASSWORD, add_person, break_the_glass, new_key_pair

from gateway.exchange.compose import provide_document_bundle

URA = "http://fhir.nl/fhir/NamingSystem/ura"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
SENDER, RECIPIENT, BYSTANDER = "90000701", "90000702", "90000703"
PATIENT_BSN = "999911120"  # passes the elfproef
PARTNER = "90000704"  # an agreement with the sender, made by the emergency test


@pytest.fixture(scope="module")
def world(server):
    """Three hospitals (an agreement between the first two), a document pushed from the
    sender to the recipient, and the sender's and the bystander's DPOs."""
    sender = server.hospital(SENDER, "Verzendend Ziekenhuis")
    recipient = server.hospital(RECIPIENT, "Ontvangend Ziekenhuis")
    bystander = server.hospital(BYSTANDER, "Ander Ziekenhuis")
    server.agreement(SENDER, RECIPIENT)
    bundle = provide_document_bundle(
        content=b"Ontslagbrief",
        content_type="text/plain",
        bsn=PATIENT_BSN,
        sender=SENDER,
        recipients=[RECIPIENT],
    )
    with server.client(sender) as fhir:
        pushed = fhir.post("", json=bundle, headers={"X-Request-Id": "push-" + uuid.uuid4().hex})
    assert pushed.status_code == 200, pushed.text
    locations = [e["response"]["location"].split("/_history")[0] for e in pushed.json()["entry"]]
    document = next(x for x in locations if x.startswith("DocumentReference/"))
    binary = next(x for x in locations if x.startswith("Binary/"))
    return {
        "sender": sender,
        "recipient": recipient,
        "bystander": bystander,
        "push_request": pushed.headers["x-request-id"],
        "document": document,
        "binary": binary,
        "dpo": server.person(sender, f"dpo-{uuid.uuid4().hex[:6]}", "dpo"),
        "bystander_dpo": server.person(bystander, f"dpo-{uuid.uuid4().hex[:6]}", "dpo"),
    }


def events(dpo: httpx.Client, **params: str) -> list[dict[str, Any]]:
    answer = dpo.get("/AuditEvent", params=params | {"_count": "1000"})
    assert answer.status_code == 200, answer.text
    return [e["resource"] for e in answer.json().get("entry", [])]


def of_request(dpo: httpx.Client, request_id: str, **params: str) -> list[dict[str, Any]]:
    return [e for e in events(dpo, **params) if request_entity(e) == request_id]


def request_entity(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        if entity.get("type", {}).get("code") == "XrequestId":
            return str(entity["what"]["identifier"]["value"])
    return None


def correlation(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        for detail in entity.get("detail", []):
            if detail["type"] == "X-Correlation-Id":
                return str(detail["valueString"])
    return None


def requestor(event: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in event["agent"] if a["requestor"])


def organisation(event: dict[str, Any]) -> str | None:
    for agent in event["agent"]:
        if agent["who"].get("identifier", {}).get("system") == URA:
            return str(agent["who"]["identifier"]["value"])
    return None


def patient_bsn(event: dict[str, Any]) -> str | None:
    for entity in event.get("entity", []):
        if entity.get("role", {}).get("code") == "1":
            return str(entity["what"]["identifier"]["value"])
    return None


def basis(event: dict[str, Any]) -> dict[str, str]:
    for entity in event.get("entity", []):
        if entity.get("type", {}).get("code") == "access-basis":
            return {d["type"]: d["valueString"] for d in entity["detail"]}
    return {}


def data(event: dict[str, Any]) -> list[str]:
    return [
        e["what"]["reference"]
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") == "4"
    ]


def subtype(event: dict[str, Any]) -> str:
    return str(event["subtype"][0]["code"])


def traced_get(fhir: httpx.Client, path: str) -> str:
    """GET ``path`` (200) under a fresh X-Request-Id; that id."""
    request_id, _ = ids()
    answer = fhir.get(path, headers={"X-Request-Id": request_id})
    assert answer.status_code == 200, answer.text
    return request_id


def ids() -> tuple[str, str]:
    return f"req-{uuid.uuid4().hex}", f"corr-{uuid.uuid4().hex}"


def test_a_read_names_agent_organisation_patient_data_basis_and_ids(server, world):
    request_id, correlation_id = ids()
    with server.client(world["sender"]) as fhir:
        read = fhir.get(
            f"/{world['document']}",
            headers={"X-Request-Id": request_id, "X-Correlation-Id": correlation_id},
        )
    assert read.status_code == 200
    assert read.headers["x-request-id"] == request_id
    assert read.headers["x-correlation-id"] == correlation_id
    (event,) = of_request(world["dpo"], request_id, subtype="read")
    assert event["type"]["code"] == "rest" and event["action"] == "R" and event["outcome"] == "0"
    assert requestor(event)["who"]["identifier"]["value"] == world["sender"].client_id
    assert organisation(event) == SENDER
    assert patient_bsn(event) == PATIENT_BSN
    assert data(event) == [f"{world['document']}/_history/1"]
    assert basis(event)["kind"] == "own-organisation"
    assert correlation(event) == correlation_id
    assert event["source"]["observer"]["identifier"]["value"] == server.settings.node_name
    assert "IHE.BasicAudit.PatientRead" in event["meta"]["profile"][0]


def test_a_search_records_its_query_and_never_its_results(server, world):
    request_id, _ = ids()
    with server.client(world["sender"]) as fhir:
        found = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": f"{BSN}|{PATIENT_BSN}"},
            headers={"X-Request-Id": request_id},
        )
    assert found.status_code == 200 and found.json()["entry"]
    recorded = of_request(world["dpo"], request_id)
    (event,) = [e for e in recorded if subtype(e) == "ITI-67"]
    query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
    assert PATIENT_BSN in base64.b64decode(query["query"]).decode()
    assert patient_bsn(event) == PATIENT_BSN
    assert "Ontslagbrief" not in json.dumps(recorded)
    assert "attachment" not in json.dumps(recorded)  # no resource of the result is in it


def test_concurrent_searches_each_leave_their_record_in_one_intact_chain(server, world):
    # On PostgreSQL one search at a time appends its record in its own transaction and the
    # others in the group commit: both paths at once, into one chain.
    query = {"patient.identifier": f"{BSN}|{PATIENT_BSN}"}
    request_ids = [f"together-{n}-{uuid.uuid4().hex}" for n in range(24)]
    with server.client(world["sender"]) as fhir:

        def search(request_id: str) -> int:
            answer = fhir.get(
                "/DocumentReference", params=query, headers={"X-Request-Id": request_id}
            )
            return answer.status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(search, request_ids)) == {200}
    recorded = [request_entity(e) for e in events(world["dpo"], patient=PATIENT_BSN)]
    assert all(recorded.count(request_id) == 1 for request_id in request_ids)
    run = server.cli("audit", "verify")
    assert run.returncode == 0 and "intact" in run.stdout, run.stdout + run.stderr


def test_create_update_delete_are_recorded_with_their_action(server, world):
    with server.client(world["sender"]) as fhir:
        request_id, _ = ids()
        created = fhir.post(
            "/Basic",
            json={"resourceType": "Basic", "code": {"text": "x"}},
            headers={"X-Request-Id": request_id},
        )
        basic = created.json()["id"]
        update_id, _ = ids()
        fhir.put(
            f"/Basic/{basic}",
            json={"resourceType": "Basic", "id": basic, "code": {"text": "y"}},
            headers={"X-Request-Id": update_id},
        )
        delete_id, _ = ids()
        fhir.delete(f"/Basic/{basic}", headers={"X-Request-Id": delete_id})
    for rid, action, version in ((request_id, "C", 1), (update_id, "U", 2), (delete_id, "D", 3)):
        (event,) = of_request(world["dpo"], rid, action=action)
        assert data(event) == [f"Basic/{basic}/_history/{version}"]
        assert event["outcome"] == "0"


def test_a_transaction_records_each_write_under_its_request_id(server, world):
    request_id, _ = ids()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {"resourceType": "Basic", "code": {"text": "t"}},
                "request": {"method": "POST", "url": "Basic"},
            }
        ],
    }
    with server.client(world["sender"]) as fhir:
        answer = fhir.post("", json=bundle, headers={"X-Request-Id": request_id})
    assert answer.status_code == 200, answer.text
    recorded = of_request(world["dpo"], request_id)
    assert [e["action"] for e in recorded] == ["C"]
    assert data(recorded[0])[0].startswith("Basic/")


def test_a_push_records_the_import_and_the_referral_decision(server, world):
    recorded = of_request(world["dpo"], world["push_request"])
    pushed = [e for e in recorded if subtype(e) == "ITI-65"]
    assert pushed and all(patient_bsn(e) == PATIENT_BSN for e in pushed)
    details = {
        d["type"]: d["valueString"]
        for e in pushed
        for entity in e["entity"]
        for d in entity.get("detail", [])
    }
    assert RECIPIENT in json.dumps(details)
    decisions = [e for e in recorded if subtype(e) == "AuthZ-Consent"]
    assert decisions and decisions[0]["outcome"] == "0"


def test_a_retrieve_by_the_recipient_is_seen_by_the_senders_dpo_with_its_basis(server, world):
    request_id, correlation_id = ids()
    with server.client(world["recipient"]) as fhir:
        got = fhir.get(
            f"/{world['binary']}",
            headers={"X-Request-Id": request_id, "X-Correlation-Id": correlation_id},
        )
    assert got.status_code == 200
    recorded = of_request(world["dpo"], request_id)
    (retrieve,) = [e for e in recorded if e["action"] == "R" and subtype(e) != "AuthZ-Consent"]
    assert organisation(retrieve) == RECIPIENT
    assert basis(retrieve)["kind"] == "referral"
    assert correlation(retrieve) == correlation_id
    (permit,) = [e for e in recorded if subtype(e) == "AuthZ-Consent"]
    assert permit["outcome"] == "0" and patient_bsn(permit) == PATIENT_BSN


def test_a_refused_access_is_a_denial_event(server, world):
    request_id, _ = ids()
    with server.client(world["bystander"]) as fhir:
        refused = fhir.get(f"/{world['document']}", headers={"X-Request-Id": request_id})
    assert refused.status_code == 404
    recorded = of_request(world["dpo"], request_id)
    denial = next(e for e in recorded if subtype(e) == "AuthZ-Consent")
    # A refusal is a minor failure (the request's, like its 404), as the refused read is.
    assert denial["outcome"] == "4" and organisation(denial) == BYSTANDER
    assert patient_bsn(denial) == PATIENT_BSN
    assert basis(denial)["kind"] == "denied"
    failed = events(world["dpo"], outcome="4", agent=world["bystander"].client_id)
    assert any(request_entity(e) == request_id for e in failed)


def test_a_call_refused_before_its_transaction_is_recorded_and_one_passing_too(server, world):
    refused_id, passed_id = ids()
    with server.client(world["bystander"]) as fhir:
        invalid = {"resourceType": "Patient", "gender": "sometimes"}
        refused = fhir.post("/Patient", json=invalid, headers={"X-Request-Id": refused_id})
        created = fhir.post(
            "/Patient", json={"resourceType": "Patient"}, headers={"X-Request-Id": passed_id}
        )
    assert refused.status_code in (400, 422), refused.text
    assert created.status_code == 201, created.text
    (failure,) = of_request(world["bystander_dpo"], refused_id)
    assert failure["outcome"] == "4" and failure["action"] == "C"
    assert failure["outcomeDesc"].startswith(str(refused.status_code))
    (success,) = of_request(world["bystander_dpo"], passed_id)
    assert success["outcome"] == "0" and success["action"] == "C"


def test_an_emergency_is_recorded_as_such(server, world):
    # An emergency stands in for the patient's consent, not for the hospitals' agreement.
    outsider = server.person(world["bystander"], f"arts-{uuid.uuid4().hex[:6]}", "clinician")
    assert break_the_glass(outsider, PATIENT_BSN, "zonder overeenkomst").status_code == 201
    assert outsider.get(f"/{world['document']}").status_code == 404
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    server.agreement(SENDER, PARTNER)
    clinician = server.person(partner, f"arts-{uuid.uuid4().hex[:6]}", "clinician")
    request_id, _ = ids()
    declared = break_the_glass(
        clinician, PATIENT_BSN, "bewusteloos op de SEH", headers={"X-Request-Id": request_id}
    )
    assert declared.status_code == 201, declared.text
    read_id, _ = ids()
    assert (
        clinician.get(f"/{world['document']}", headers={"X-Request-Id": read_id}).status_code == 200
    )
    (declaration,) = of_request(world["dpo"], request_id)
    assert declaration["subtype"][0]["code"] == "110127"
    assert "bewusteloos op de SEH" in json.dumps(declaration)
    reads = [e for e in of_request(world["dpo"], read_id) if subtype(e) == "read"]
    assert reads and basis(reads[0])["kind"] == "emergency"
    purposes = {c["code"] for p in reads[0]["purposeOfEvent"] for c in p["coding"]}
    assert {"ETREAT", "BTG"} <= purposes
    assert any(request_entity(e) == read_id for e in events(world["dpo"], emergencies="true"))


def test_login_and_token_issue_succeeding_and_failing_are_recorded(server, world):
    username = f"arts-{uuid.uuid4().hex[:6]}"
    app = add_person(
        server.settings.database_url, server.settings.data_dir, SENDER, username, "clinician"
    )
    wrong_id, _ = ids()
    form = {
        "response_type": "code",
        "client_id": app,
        "redirect_uri": LOGIN_REDIRECT,
        "scope": "user/*.rs",
        "state": "s",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    wrong = httpx.post(
        f"{server.url}/oauth/authorize",
        data=form | {"username": username, "password": "not the password!"},
        headers={"X-Request-Id": wrong_id},
    )
    assert wrong.status_code == 401
    right_id, _ = ids()
    right = httpx.post(
        f"{server.url}/oauth/authorize",
        data=form | {"username": username, "password": PERSON_PASSWORD},
        headers={"X-Request-Id": right_id},
    )
    assert right.status_code == 303

    def token_request(assertion: str) -> tuple[str, httpx.Response]:
        request_id, _ = ids()
        answer = httpx.post(
            server.token_url,
            data={
                "grant_type": "client_credentials",
                "scope": "system/*.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
            headers={"X-Request-Id": request_id},
        )
        return request_id, answer

    token_id, bad_token = token_request(
        world["sender"].assertion(server.token_url, aud="elsewhere")
    )
    assert bad_token.status_code in (400, 401)
    good_id, good_token = token_request(world["sender"].assertion(server.token_url))
    assert good_token.status_code == 200
    # A failed login names no organisation: only the operator sees it (below, CLI report).
    assert of_request(world["dpo"], wrong_id) == []
    (login,) = of_request(world["dpo"], right_id, subtype="110122")
    assert login["outcome"] == "0" and requestor(login)["name"] == username
    assert organisation(login) == SENDER
    (issued,) = of_request(world["dpo"], good_id, subtype="ITI-71")
    assert issued["outcome"] == "0"
    assert requestor(issued)["who"]["identifier"]["value"] == world["sender"].client_id
    assert world["sender"].client_id in json.dumps(issued)
    assert "access_token" not in json.dumps(issued)
    everything = operator_report(server, "--format", "json")
    lines = {e["request_id"]: e for e in json.loads(everything)["events"]}
    assert lines[wrong_id]["event"] == "login" and lines[wrong_id]["outcome"] == "4"
    assert lines[wrong_id]["user"] == username
    assert lines[token_id]["event"] == "token" and lines[token_id]["outcome"] == "4"
    assert lines[token_id]["user"] == world["sender"].client_id


def test_the_audit_log_is_read_only_for_everyone(server, world):
    event = events(world["dpo"])[0]
    for method, path in (
        ("POST", "/AuditEvent"),
        ("PUT", f"/AuditEvent/{event['id']}"),
        ("DELETE", f"/AuditEvent/{event['id']}"),
    ):
        answer = world["dpo"].request(method, path, json=event)
        assert answer.status_code == 405, (method, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome"
    read = world["dpo"].get(f"/AuditEvent/{event['id']}")
    assert read.status_code == 200 and read.json() == event


def test_event_ids_follow_the_order_the_events_were_recorded_in(server, world):
    # Time-ordered ids (UUID version 7) land at the end of the log's unique index.
    request_ids = [f"order-{n}-{uuid.uuid4().hex}" for n in range(12)]
    with server.client(world["sender"]) as fhir:
        for request_id in request_ids:
            answer = fhir.get(f"/{world['document']}", headers={"X-Request-Id": request_id})
            assert answer.status_code == 200
    recorded = {request_entity(e): e["id"] for e in events(world["dpo"], patient=PATIENT_BSN)}
    ids = [recorded[request_id] for request_id in request_ids]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_only_dpos_read_the_log_and_only_what_concerns_their_organisation(server, world):
    with server.client(world["sender"]) as fhir:
        assert fhir.get("/AuditEvent").status_code == 403
    clinician = server.person(world["sender"], f"arts-{uuid.uuid4().hex[:6]}", "clinician")
    assert clinician.get("/AuditEvent").status_code == 403
    # The bystander's DPO sees its own people's events, never the sender's own reads.
    own = events(world["bystander_dpo"])
    assert own and all(
        BYSTANDER
        in (
            organisation(e),
            *(
                ent["what"].get("identifier", {}).get("value")
                for ent in e.get("entity", [])
                if "what" in ent
            ),
        )
        for e in own
    )
    request_id, _ = ids()
    with server.client(world["sender"]) as fhir:
        fhir.get(f"/{world['document']}", headers={"X-Request-Id": request_id})
    assert of_request(world["bystander_dpo"], request_id) == []
    (own_read,) = of_request(world["dpo"], request_id)
    assert world["bystander_dpo"].get(f"/AuditEvent/{own_read['id']}").status_code == 404


def test_every_use_of_the_log_is_itself_recorded(server, world):
    request_id, _ = ids()
    answer = world["dpo"].get(
        "/AuditEvent", params={"patient": PATIENT_BSN}, headers={"X-Request-Id": request_id}
    )
    assert answer.status_code == 200
    (use,) = of_request(world["dpo"], request_id, type="110101")
    assert patient_bsn(use) == PATIENT_BSN
    assert requestor(use)["role"][0]["coding"][0]["code"] == "dpo"


def test_search_parameters_and_paging(server, world):
    first = world["dpo"].get("/AuditEvent", params={"_count": "2"})
    assert first.status_code == 200
    bundle = first.json()
    assert len(bundle["entry"]) == 2
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    second = world["dpo"].get(following)
    assert second.status_code == 200
    seen = {e["resource"]["id"] for e in bundle["entry"]}
    assert not seen & {e["resource"]["id"] for e in second.json()["entry"]}
    for params in ({"date": "not-a-date"}, {"patient": "123"}, {"colour": "blue"}):
        refused = world["dpo"].get("/AuditEvent", params=params)
        assert refused.status_code == 400, params
        assert refused.json()["resourceType"] == "OperationOutcome"
    today = events(world["dpo"], date=f"ge{datetime.now(UTC).date().isoformat()}")
    assert today
    assert events(world["dpo"], date="lt2000-01-01") == []


def operator_report(server, *args: str) -> str:
    run = server.cli("audit", "report", *args)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_patient_access_report_in_csv_json_and_fhir(server, world):
    with server.client(world["recipient"]) as fhir:
        assert fhir.get(f"/{world['binary']}").status_code == 200
    with server.client(world["bystander"]) as fhir:
        assert fhir.get(f"/{world['binary']}").status_code == 404
    rows = list(csv.DictReader(io.StringIO(operator_report(server, "--patient", PATIENT_BSN))))
    assert rows and all(r["patient"] == PATIENT_BSN for r in rows)
    retrieved = [r for r in rows if r["organization"] == RECIPIENT and r["action"] == "R"]
    assert retrieved and retrieved[-1]["basis"] == "referral"
    assert retrieved[-1]["data_holder"] == SENDER
    assert {"when", "user", "role", "data", "basis", "emergency"} <= set(rows[0])
    assert [r["when"] for r in rows] == sorted(r["when"] for r in rows)
    as_json = json.loads(operator_report(server, "--patient", PATIENT_BSN, "--format", "json"))
    assert len(as_json["events"]) >= len(rows)
    as_fhir = json.loads(operator_report(server, "--patient", PATIENT_BSN, "--format", "fhir"))
    assert as_fhir["type"] == "collection"
    assert all(e["resource"]["resourceType"] == "AuditEvent" for e in as_fhir["entry"])
    denials = list(
        csv.DictReader(io.StringIO(operator_report(server, "--patient", PATIENT_BSN, "--denials")))
    )
    assert denials and all(r["outcome"] != "0" for r in denials)
    # The DPO gets the same report over the API (a POST keeps the BSN out of the URL).
    api = world["dpo"].post(
        "/AuditEvent/$report",
        data={"patient": PATIENT_BSN, "format": "csv"},
    )
    assert api.status_code == 200 and api.headers["content-type"].startswith("text/csv")
    assert PATIENT_BSN in api.text
    bad = server.cli("audit", "report", "--patient", "123456789")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "BSN" in bad.stderr


def test_console_changes_record_whether_they_add_or_alter(server, world, tmp_path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(new_key_pair()[1]))
    added = server.cli(
        "clients", "add", "--org", SENDER, "--name", "EPD-koppeling", "--jwks", str(jwks),
        "--scopes", "system/*.read", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    client_id = json.loads(added.stdout)["client_id"]
    assert server.cli("clients", "disable", client_id).returncode == 0
    report = json.loads(operator_report(server, "--format", "fhir"))
    accounts = [
        (e["resource"]["action"], json.dumps(e["resource"]))
        for e in report["entry"]
        if e["resource"]["subtype"][0]["code"] == "110137"
    ]
    assert [action for action, _ in accounts[-2:]] == ["C", "U"]
    assert "clients add" in accounts[-2][1] and "clients disable" in accounts[-1][1]


def test_administrative_changes_at_the_console_are_recorded(server, world):
    run = server.cli("orgs", "add", "--ura", "90000799", "--name", "Nieuw Ziekenhuis")
    assert run.returncode == 0, run.stderr
    lines = json.loads(operator_report(server, "--format", "json"))["events"]
    admin = [e for e in lines if e["event"] == "admin-organization"]
    assert admin and admin[-1]["role"] == "operator" and admin[-1]["purpose"] == "HOPERAT"
    report = json.loads(operator_report(server, "--format", "fhir"))
    recorded = [
        e["resource"] for e in report["entry"] if e["resource"]["subtype"][0]["code"] == "110128"
    ]
    assert "orgs add --ura 90000799" in json.dumps(recorded[-1])
    assert recorded[-1]["action"] == "C"
    # The Organization it made is named in the record, written in the same transaction.
    assert any(d.startswith("Organization/") for d in admin[-1]["data"].split()), admin[-1]
    # A change the operator got wrong changes nothing and is recorded as refused.
    wrong = server.cli("agreements", "end", "no-such-agreement")
    assert wrong.returncode == 1 and "no agreement no-such-agreement" in wrong.stderr
    lines = json.loads(operator_report(server, "--format", "json"))["events"]
    refused = [e for e in lines if e["event"] == "admin-organization" and e["outcome"] != "0"]
    assert refused and "no agreement" in refused[-1]["reason"], refused
    assert refused[-1]["action"] == "U"


def test_verify_reports_an_intact_log(server, world):
    run = server.cli("audit", "verify")
    assert run.returncode == 0, run.stderr
    assert "intact" in run.stdout
    checked = world["dpo"].get("/AuditEvent/$verify")
    assert checked.status_code == 200
    assert checked.json()["parameter"][0] == {"name": "intact", "valueBoolean": True}


AUDIT_SAMPLES = {
    "patient": f"{BSN}|{PATIENT_BSN}",
    "agent": "someone",
    "agent-organization": f"{URA}|{SENDER}",
    "date": "ge2020-01-01",
    "type": "read",
    "subtype": "read",
    "outcome": "0",
    "action": "R",
}


def test_the_capability_statement_lists_what_the_audit_log_really_offers(server, world):
    with server.client() as fhir:
        statement = fhir.get("/metadata").json()
    (audit,) = [r for r in statement["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    assert [i["code"] for i in audit["interaction"]] == ["read", "search-type"]
    listed = {p["name"] for p in audit["searchParam"]}
    assert listed == set(AUDIT_SAMPLES)
    dpo = world["dpo"]
    for name, value in AUDIT_SAMPLES.items():
        answer = dpo.get("/AuditEvent", params={name: value})
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json()["type"] == "searchset"
    for operation in audit["operation"]:
        params = {"patient": AUDIT_SAMPLES["patient"]} if operation["name"] == "report" else {}
        answer = dpo.get(f"/AuditEvent/${operation['name']}", params=params)
        assert answer.status_code == 200, (operation, answer.text)
    # What it does not list, it refuses: the gateway alone writes the log.
    with server.client() as fhir:
        written = fhir.post("/AuditEvent", json={"resourceType": "AuditEvent"})
    assert written.status_code == 405


def test_vread_history_and_a_batch_are_each_recorded(server, world):
    """The version-aware reads and a batch: each names the data it touched, with its patient."""
    with server.client(world["sender"]) as fhir:
        vread_id = traced_get(fhir, f"/{world['document']}/_history/1")
        history_id = traced_get(fhir, f"/{world['document']}/_history")
        batch_id, _ = ids()
        batch = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": world["document"]}},
                {
                    "resource": {"resourceType": "Basic", "code": {"text": "b"}},
                    "request": {"method": "POST", "url": "Basic"},
                },
            ],
        }
        answer = fhir.post("", json=batch, headers={"X-Request-Id": batch_id})
        assert answer.status_code == 200, answer.text
    (vread,) = of_request(world["dpo"], vread_id, subtype="vread")
    assert data(vread) == [f"{world['document']}/_history/1"]
    assert patient_bsn(vread) == PATIENT_BSN and vread["action"] == "R"
    (history,) = of_request(world["dpo"], history_id, subtype="history-instance")
    assert data(history) == [f"{world['document']}/_history/1"]
    assert patient_bsn(history) == PATIENT_BSN
    recorded = of_request(world["dpo"], batch_id)
    actions = sorted(e["action"] for e in recorded)
    assert actions == ["C", "R"], [(subtype(e), e["action"]) for e in recorded]
    (read,) = [e for e in recorded if e["action"] == "R"]
    assert data(read) == [f"{world['document']}/_history/1"] and patient_bsn(read) == PATIENT_BSN
