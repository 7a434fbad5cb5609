"""The notified-pull inbox: the recipient finds its notification Task, pulls, and marks it done;
the sender sees the status; nobody else sees anything, and only the status may change."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from gateway.exchange.compose import provide_document_bundle
from gateway.fhir.validation import validate_resource

URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
TASK_CODE = "http://fhir.nl/fhir/NamingSystem/TaskCode|pull-notification"


def directory_id(fhir, ura):
    found = fhir.get("/Organization", params={"identifier": f"{URA_SYSTEM}|{ura}"}).json()
    return found["entry"][0]["resource"]["id"]


def submit(server, network, type_code="57133-1"):
    """One document sent from the sender to the recipient; the transaction-response."""
    bundle = provide_document_bundle(
        content=b"%PDF-1.4 verwijsbrief",
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        type_code=type_code,
        title=f"Verwijsbrief {uuid.uuid4().hex[:6]}",
    )
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def submission(server, network):
    return submit(server, network)


def location(submission, position):
    return submission["entry"][position]["response"]["location"].split("/_history")[0]


def inbox_task(fhir, recipient_ura, submission):
    owner = directory_id(fhir, recipient_ura)
    tasks = fhir.get(
        "/Task",
        params={
            "owner": f"Organization/{owner}",
            "status": "requested",
            "code": TASK_CODE,
            "focus": location(submission, 0),
        },
    ).json()
    assert tasks["total"] == 1, tasks
    return tasks["entry"][0]["resource"]


def test_the_recipient_finds_its_notification_and_pulls_what_it_points_at(
    server, network, submission
):
    with server.client(network.recipient) as fhir:
        task = inbox_task(fhir, network.recipient.ura, submission)
        assert task["owner"]["identifier"] == {"system": URA_SYSTEM, "value": network.recipient.ura}
        assert task["requester"]["identifier"] == {
            "system": URA_SYSTEM,
            "value": network.sender.ura,
        }
        period = task["restriction"]["period"]
        length = datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])
        assert length == timedelta(days=30)
        pointed = [i["valueReference"]["reference"] for i in task["input"] if "valueReference" in i]
        assert location(submission, 0) in pointed and location(submission, 1) in pointed
        document_input = next(
            i
            for i in task["input"]
            if i.get("valueReference", {}).get("reference") == location(submission, 1)
        )
        assert document_input["type"]["coding"][0]["code"] == "57133-1"
        for reference in pointed:
            assert fhir.get(f"/{reference}").status_code == 200
        # The same inbox through the owner's URA, for integrations that only know URAs.
        by_ura = fhir.get(
            "/Task",
            params={
                "owner.identifier": f"{URA_SYSTEM}|{network.recipient.ura}",
                "status": "requested",
            },
        ).json()
        assert task["id"] in {e["resource"]["id"] for e in by_ura["entry"]}


@pytest.mark.parametrize("type_code", ["57133-1", None], ids=["typed", "untyped"])
def test_the_notification_task_is_a_valid_r4_task(server, network, type_code):
    """The gateway makes the Task itself from the submission's validated parts and stores it
    without validating it again: what it makes must pass the same validation as a client's."""
    submitted = submit(server, network, type_code)
    with server.client(network.recipient) as fhir:
        task = inbox_task(fhir, network.recipient.ura, submitted)
    task.pop("meta")
    assert validate_resource(task, "Task") == task


def test_the_recipient_marks_it_completed_and_the_sender_sees_that(server, network, submission):
    with server.client(network.recipient) as fhir:
        task = inbox_task(fhir, network.recipient.ura, submission)
        done = task | {"status": "completed"}
        response = fhir.put(f"/Task/{task['id']}", json=done)
        assert response.status_code == 200, response.text
        assert (
            fhir.get("/Task", params={"_id": task["id"], "status": "requested"}).json()["total"]
            == 0
        )
    with server.client(network.sender) as fhir:
        sender_org = directory_id(fhir, network.sender.ura)
        sent = fhir.get(
            "/Task",
            params={"requester": f"Organization/{sender_org}", "focus": location(submission, 0)},
        ).json()
        assert [e["resource"]["status"] for e in sent["entry"]] == ["completed"]


def test_the_recipient_can_change_only_the_status(server, network, submission):
    with server.client(network.recipient) as fhir:
        task = inbox_task(fhir, network.recipient.ura, submission)
        rerouted = task | {"status": "completed", "owner": {"display": "someone else"}}
        assert fhir.put(f"/Task/{task['id']}", json=rerouted).status_code == 403
        cancelled = task | {"status": "cancelled"}  # the sender's word, not the recipient's
        assert fhir.put(f"/Task/{task['id']}", json=cancelled).status_code == 403
        assert fhir.delete(f"/Task/{task['id']}").status_code == 403
        assert fhir.get(f"/Task/{task['id']}").json()["status"] == "requested"


def test_the_sender_may_withdraw_its_notification_but_not_report_the_recipients_work(
    server, network, submission
):
    with server.client(network.recipient) as fhir:
        task = inbox_task(fhir, network.recipient.ura, submission)
    with server.client(network.sender) as fhir:
        for status in ("completed", "received", "in-progress", "rejected"):
            answer = fhir.put(f"/Task/{task['id']}", json=task | {"status": status})
            assert answer.status_code == 403, (status, answer.text)
        readdressed = task | {"owner": {"display": "someone else"}}
        assert fhir.put(f"/Task/{task['id']}", json=readdressed).status_code == 403
        assert fhir.get(f"/Task/{task['id']}").json()["status"] == "requested"
        withdrawn = task | {"status": "cancelled", "statusReason": {"text": "verkeerde patiënt"}}
        answer = fhir.put(f"/Task/{task['id']}", json=withdrawn)
        assert answer.status_code == 200, answer.text
    with server.client(network.recipient) as fhir:
        assert fhir.get(f"/Task/{task['id']}").json()["status"] == "cancelled"


def test_another_hospital_sees_neither_the_notification_nor_the_documents(
    server, network, submission
):
    with server.client(network.recipient) as fhir:
        task_id = inbox_task(fhir, network.recipient.ura, submission)["id"]
    with server.client(network.bystander) as fhir:
        assert fhir.get(f"/Task/{task_id}").status_code == 404
        for position in range(4):
            assert fhir.get(f"/{location(submission, position)}").status_code == 404
        inbox = fhir.get("/Task", params={"code": TASK_CODE, "_summary": "count"}).json()
        assert inbox["total"] == 0
        taken = fhir.put(
            f"/Task/{task_id}",
            json={"resourceType": "Task", "id": task_id, "status": "completed", "intent": "order"},
        )
        assert taken.status_code == 409  # its id is not available to this hospital at all
