"""What a push sends is the recipient's copy: the versions that were sent, not the sender's
later ones. A change the sender makes after the push (a new address, an edited document) needs
the patient's consent to reach the recipient, or a new push that sends it; a deletion is shown
as one, and the notification Task, which both sides write, stays shared as it goes."""

from __future__ import annotations

import uuid

import pytest
from harness import valid_bsns

from gateway.exchange.compose import provide_document_bundle

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
BSNS = valid_bsns(999_940_000)


def push(server, network, bsn: str) -> dict[str, str]:
    """Push a letter about ``bsn``; the ids of what it stored, by resource type."""
    bundle = provide_document_bundle(
        content=f"brief {uuid.uuid4()}".encode(),
        content_type="text/plain",
        bsn=bsn,
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
    )
    with server.client(network.sender) as fhir:
        answer = fhir.post("", json=bundle)
    assert answer.status_code == 200, answer.text
    located = [e["response"]["location"].split("/_history")[0] for e in answer.json()["entry"]]
    return {location.split("/")[0]: location.split("/")[1] for location in located}


def changed(server, hospital, path: str, change) -> dict:
    with server.client(hospital) as fhir:
        resource = fhir.get(path).json()
        change(resource)
        answer = fhir.put(path, json=resource)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def bsn():
    return next(BSNS)


def test_a_later_version_of_a_pushed_patient_is_not_the_recipients(server, network, bsn):
    ids = push(server, network, bsn)
    patient = f"/Patient/{ids['Patient']}"
    changed(server, network.sender, patient, lambda p: p.update(telecom=[{"value": "0612"}]))
    with server.client(network.recipient) as fhir:
        assert fhir.get(patient).status_code == 404
        assert fhir.get(f"{patient}/_history/2").status_code == 404
        sent = fhir.get(f"{patient}/_history/1")
        assert sent.status_code == 200 and "telecom" not in sent.json()
        history = fhir.get(f"{patient}/_history").json()
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["1"]
        found = fhir.get("/Patient", params={"identifier": f"{BSN_SYSTEM}|{bsn}"}).json()
        assert found["total"] == 0
    push(server, network, bsn)  # a new push sends the patient as it is now
    with server.client(network.recipient) as fhir:
        now = fhir.get(patient)
        assert now.status_code == 200 and now.json()["telecom"] == [{"value": "0612"}]


def test_a_document_edited_after_the_push_is_read_as_it_was_sent(server, network, bsn):
    ids = push(server, network, bsn)
    document = f"/DocumentReference/{ids['DocumentReference']}"
    changed(server, network.sender, document, lambda d: d.update(description="later note"))
    with server.client(network.recipient) as fhir:
        assert fhir.get(document).status_code == 404
        found = fhir.get(
            "/DocumentReference", params={"patient.identifier": f"{BSN_SYSTEM}|{bsn}"}
        ).json()
        assert found["total"] == 0
        sent = fhir.get(f"{document}/_history/1").json()
        assert "description" not in sent
        assert fhir.get(f"/Binary/{ids['Binary']}", headers={"Accept": "*/*"}).status_code == 200


def test_a_deletion_after_the_push_is_shown_to_the_recipient(server, network, bsn):
    ids = push(server, network, bsn)
    with server.client(network.sender) as fhir:
        assert fhir.delete(f"/DocumentReference/{ids['DocumentReference']}").status_code in (
            200,
            204,
        )
    with server.client(network.recipient) as fhir:
        assert fhir.get(f"/DocumentReference/{ids['DocumentReference']}").status_code == 410


def test_a_replacement_shows_the_recipient_its_copy_superseded(server, network, bsn):
    ids = push(server, network, bsn)
    replacement = provide_document_bundle(
        content=b"verbeterde brief",
        content_type="text/plain",
        bsn=bsn,
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        replaces=ids["DocumentReference"],
    )
    with server.client(network.sender) as fhir:
        assert fhir.post("", json=replacement).status_code == 200
    with server.client(network.recipient) as fhir:
        old = fhir.get(f"/DocumentReference/{ids['DocumentReference']}")
        assert old.status_code == 200 and old.json()["status"] == "superseded"


def test_the_notification_task_stays_shared_as_both_sides_write_it(server, network, bsn):
    ids = push(server, network, bsn)
    with server.client(network.recipient) as fhir:
        inbox = fhir.get(
            "/Task",
            params={
                "owner.identifier": f"{URA_SYSTEM}|{network.recipient.ura}",
                "focus": f"List/{ids['List']}",
            },
        ).json()
    (found,) = inbox["entry"]
    task = f"/Task/{found['resource']['id']}"
    done = changed(server, network.recipient, task, lambda t: t.update(status="completed"))
    assert done["status"] == "completed"
    with server.client(network.recipient) as fhir:
        assert fhir.get(task).json()["status"] == "completed"
    with server.client(network.sender) as fhir:
        assert fhir.get(task).json()["status"] == "completed"


def test_the_content_of_a_sent_document_cannot_be_changed(server, network, bsn):
    """A document's content is what was sent and hashed: the sender cannot swap it under the
    same Binary (its DocumentReference would keep the old hash); a replacement is the way."""
    ids = push(server, network, bsn)
    binary = f"/Binary/{ids['Binary']}"
    with server.client(network.sender) as fhir:
        original = fhir.get(binary, headers={"Accept": "*/*"}).content
        swap = {"resourceType": "Binary", "id": ids["Binary"], "contentType": "text/plain"}
        swap["data"] = "c3dhcHBlZA=="  # "swapped"
        refused = fhir.put(binary, json=swap)
        assert refused.status_code == 422, refused.text
        assert "replacement" in refused.json()["issue"][0]["diagnostics"]
        elsewhere = swap | {"id": str(uuid.uuid4())}
        assert fhir.put(f"/Binary/{elsewhere['id']}", json=elsewhere).status_code == 422
        assert fhir.get(binary, headers={"Accept": "*/*"}).content == original
    with server.client(network.recipient) as fhir:
        assert fhir.get(binary, headers={"Accept": "*/*"}).content == original


def test_a_document_entered_in_error_or_deleted_is_no_longer_served(server, network, bsn):
    """A letter sent about the wrong patient is marked entered-in-error by its sender: its
    content must stop reaching anyone, the recipient it was sent to too (ITI-68: 410)."""
    ids = push(server, network, bsn)
    document = f"/DocumentReference/{ids['DocumentReference']}"
    content = f"/Binary/{ids['Binary']}"

    def retrieved(hospital) -> int:
        with server.client(hospital) as fhir:
            raw = fhir.get(content, headers={"Accept": "*/*"}).status_code
            as_fhir = fhir.get(content, headers={"Accept": "application/fhir+json"}).status_code
            assert raw == as_fhir, (raw, as_fhir)  # no way around it by asking for FHIR
            return raw

    assert retrieved(network.recipient) == 200
    changed(server, network.sender, document, lambda d: d.update(status="entered-in-error"))
    assert (retrieved(network.recipient), retrieved(network.sender)) == (410, 410)
    with server.client(network.sender) as fhir:
        assert fhir.get(f"{content}/_history/1").status_code == 410
        history = fhir.get(f"{content}/_history").json()
        assert [e["resource"].get("data") for e in history["entry"]] == [None]
    changed(server, network.sender, document, lambda d: d.update(status="current"))
    assert retrieved(network.recipient) == 200  # the mark was the mistake: served again
    with server.client(network.sender) as fhir:
        assert fhir.delete(document).status_code == 204
    assert retrieved(network.recipient) == 410
