"""``zorgbrug send``: a PDF from the command line, through the same ITI-65 path as a push; the
recipient finds it and retrieves the same bytes. Bad arguments are one-line errors."""

from __future__ import annotations

import json

from harness import SHARED_DATA, unique_bsn

PDF = SHARED_DATA / "c-cda" / "unstructured" / "CDA_reference_PDF" / "UD_sample.pdf"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"


def send(server, network, *args: str, bsn: str):
    return server.cli(
        "send",
        "--org",
        network.sender.ura,
        "--to",
        network.recipient.ura,
        "--patient",
        bsn,
        "--type",
        "18842-5",
        *args,
    )


def test_a_sent_pdf_is_found_and_retrieved_byte_identical_by_the_recipient(server, network):
    bsn = unique_bsn()
    run = send(server, network, "--json", "--title", "Ontslagbrief", str(PDF), bsn=bsn)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["status"] == "sent" and answer["bytes"] == PDF.stat().st_size
    with server.client(network.recipient) as fhir:
        found = fhir.get("/DocumentReference", params={"patient.identifier": f"{BSN}|{bsn}"})
        assert found.json()["total"] == 1
        document = found.json()["entry"][0]["resource"]
        assert document["description"] == "Ontslagbrief"
        assert document["type"]["coding"][0]["code"] == "18842-5"
        url = document["content"][0]["attachment"]["url"]
        retrieved = fhir.get(url, headers={"Accept": "application/pdf"})
        assert retrieved.status_code == 200
        assert retrieved.content == PDF.read_bytes()
    # Sent again under its unique id (the integration's retry): stored once.
    unique_id = document["masterIdentifier"]["value"]
    again = send(server, network, "--json", "--unique-id", unique_id, str(PDF), bsn=bsn)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "already sent before"
    with server.client(network.recipient) as fhir:
        found = fhir.get("/DocumentReference", params={"patient.identifier": f"{BSN}|{bsn}"})
        assert found.json()["total"] == 1


def test_an_invalid_bsn_is_a_one_line_error_and_sends_nothing(server, network):
    run = send(server, network, str(PDF), bsn="999930001")
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    # Named as the user typed it, not as an entry of the bundle the command builds.
    assert len(lines) == 1 and "--patient '999930001' is not a valid BSN" in lines[0], run.stderr
    with server.client(network.recipient) as fhir:
        found = fhir.get("/DocumentReference", params={"patient.identifier": f"{BSN}|999930001"})
        assert found.json()["total"] == 0
