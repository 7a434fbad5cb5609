"""PDF documents with metadata → Patient, DocumentReference and Binary."""

from __future__ import annotations

import base64
import hashlib

import pytest

from adapters import (
    BSN_SYSTEM,
    MalformedInput,
    SourceInfo,
    convert,
    pdf_metadata_from_sidecar,
)
from tests.adapters.adapters_testkit import FIXTURES, TEST_BSN, URA, only

PDF = (FIXTURES / "pdf" / "discharge-summary-ud-sample.pdf").read_bytes()
METADATA = {
    "bsn": TEST_BSN,
    "type_code": "18842-5",
    "type_display": "Ontslagbrief",
    "title": "Ontslagbrief cardiologie",
    "date": "2024-03-08T16:20:00",
    "author": "dr. P. Jansen",
    "author_identifier": {"system": "urn:oid:2.16.840.1.113883.2.4.6.1", "value": "01234567"},
    "document_id": "2.16.840.1.113883.2.4.3.11.999.3.12345",
    "language": "nl-NL",
}


def source(**metadata: object) -> SourceInfo:
    return SourceInfo(organization=URA, metadata={**METADATA, **metadata})


def test_a_pdf_becomes_patient_document_and_byte_identical_binary() -> None:
    conversion = convert("pdf", PDF, source())
    assert conversion.issues == []
    assert conversion.resource_counts() == {"Patient": 1, "Binary": 1, "DocumentReference": 1}
    entries = {e["resource"]["resourceType"]: e for e in conversion.bundle["entry"]}
    assert entries["Patient"]["resource"]["identifier"] == [
        {"use": "official", "system": BSN_SYSTEM, "value": TEST_BSN}
    ]
    assert entries["Patient"]["request"]["ifNoneExist"] == f"identifier={BSN_SYSTEM}|{TEST_BSN}"
    assert base64.b64decode(entries["Binary"]["resource"]["data"]) == PDF
    document = entries["DocumentReference"]["resource"]
    attachment = document["content"][0]["attachment"]
    assert attachment["url"] == entries["Binary"]["fullUrl"]
    assert attachment["contentType"] == "application/pdf"
    assert attachment["size"] == 173792
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(PDF).digest()).decode()
    assert attachment["language"] == "nl-NL"
    assert document["type"]["coding"] == [
        {"system": "http://loinc.org", "code": "18842-5", "display": "Ontslagbrief"}
    ]
    assert document["subject"] == {"reference": entries["Patient"]["fullUrl"]}
    assert document["date"] == "2024-03-08T16:20:00+01:00"  # local time read in Europe/Amsterdam
    assert document["author"] == [
        {
            "display": "dr. P. Jansen",
            "identifier": {"system": "http://fhir.nl/fhir/NamingSystem/agb-z", "value": "01234567"},
        }
    ]
    assert document["custodian"]["identifier"] == {
        "system": "http://fhir.nl/fhir/NamingSystem/ura",
        "value": URA,
    }
    assert document["masterIdentifier"] == {
        "system": "urn:ietf:rfc:3986", "value": "urn:oid:2.16.840.1.113883.2.4.3.11.999.3.12345"}  # fmt: skip


def test_without_a_document_id_the_same_file_gets_the_same_id() -> None:
    first = only(convert("pdf", PDF, source(document_id=None)).resources("DocumentReference"))
    second = only(convert("pdf", PDF, source(document_id=None)).resources("DocumentReference"))
    assert first["masterIdentifier"] == second["masterIdentifier"]
    assert first["masterIdentifier"]["value"].startswith("urn:uuid:")


def test_an_invalid_bsn_is_an_error_and_links_no_patient() -> None:
    conversion = convert("pdf", PDF, source(bsn="123456789"))
    assert not conversion.ok
    assert [(i.location, i.severity) for i in conversion.issues] == [("metadata.bsn", "error")]
    assert "Patient" not in conversion.resource_counts()
    assert "subject" not in only(conversion.resources("DocumentReference"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Dit is geen PDF maar een tekstbestand.\n", "does not start with %PDF-"),
        (
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n",
            "does not open",
        ),
        (PDF[:100_000], "no %%EOF"),
        (b"<html><body>%PDF-1.7</body></html>", "does not start with %PDF-"),
    ],
    ids=["text", "fake-pdf", "truncated", "html"],
)
def test_what_is_not_a_pdf_is_malformed(data: bytes, message: str) -> None:
    with pytest.raises(MalformedInput, match=message):
        convert("pdf", data, source())


@pytest.mark.parametrize(
    ("metadata", "location"),
    [
        ({"bsn": None}, "metadata.bsn"),
        ({"type_code": "ontslag"}, "metadata.type_code"),
        ({"title": 7}, "metadata.title"),
        ({"author_identifier": "AGB 01234567"}, "metadata.author_identifier"),
    ],
)
def test_missing_or_malformed_metadata_is_refused_with_its_key(
    metadata: dict, location: str
) -> None:
    with pytest.raises(MalformedInput) as caught:
        convert("pdf", PDF, source(**metadata))
    assert caught.value.location == location


def test_a_sidecar_is_read_into_metadata() -> None:
    metadata = pdf_metadata_from_sidecar(
        b'{"bsn": "999911120", "type_code": "11488-4", "title": "Consult"}'
    )
    document = only(
        convert("pdf", PDF, SourceInfo(organization=URA, metadata=metadata)).resources(
            "DocumentReference"
        )
    )
    assert document["type"]["coding"][0]["code"] == "11488-4"
    with pytest.raises(MalformedInput):
        pdf_metadata_from_sidecar(b"[1, 2]")
    with pytest.raises(MalformedInput):
        pdf_metadata_from_sidecar(b"{bsn: 1}")
