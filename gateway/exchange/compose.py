"""Compose an ITI-65 Provide Document Bundle (Minimal Metadata) for one document.

Used by ``zorgbrug send`` (and the web UI to come) so that a PDF someone would have e-mailed
goes through exactly the same path as a hospital integration's push.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from gateway.exchange import mhd
from gateway.fhir.dutch_identifiers import BSN, URA

LOINC = "http://loinc.org"
URA_OID = "urn:oid:2.16.528.1.1007.3.3"


def provide_document_bundle(
    *,
    content: bytes,
    content_type: str,
    bsn: str,
    sender: str,
    recipients: list[str],
    type_code: str | None = None,
    type_display: str | None = None,
    title: str | None = None,
    unique_id: str | None = None,
    submission_id: str | None = None,
    replaces: str | None = None,
) -> dict[str, Any]:
    """An ITI-65 bundle: SubmissionSet, DocumentReference, Binary and the Patient by BSN.

    ``type_code`` is a LOINC document type (e.g. 18842-5 discharge summary); ``unique_id``
    the document's masterIdentifier (new when absent; re-use it to re-send the same document);
    ``replaces`` a DocumentReference id the new document supersedes.
    """
    now = datetime.now(UTC).isoformat(timespec="seconds")
    patient, document, binary = (f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    attachment: dict[str, Any] = {
        "contentType": content_type,
        "url": binary,
        "size": len(content),
        "hash": base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode(),
        "creation": now,
    }
    if title:
        attachment["title"] = title
    reference: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {
            "system": "urn:ietf:rfc:3986",
            "value": unique_id or f"urn:uuid:{uuid.uuid4()}",
        },
        "status": "current",
        "subject": {"reference": patient},
        "date": now,
        "custodian": {"identifier": {"system": URA, "value": sender}},
        "content": [{"attachment": attachment}],
    }
    if type_code:
        coding = {"system": LOINC, "code": type_code} | (
            {"display": type_display} if type_display else {}
        )
        reference["type"] = {"coding": [coding]}
    if title:
        reference["description"] = title
    if replaces:
        reference["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{replaces}"}}
        ]
    submission_set = {
        "resourceType": "List",
        "identifier": [
            {
                "use": "usual",
                "system": "urn:ietf:rfc:3986",
                "value": submission_id or f"urn:uuid:{uuid.uuid4()}",
            }
        ],
        "extension": [
            {"url": mhd.SOURCE_ID, "valueIdentifier": {"value": f"{URA_OID}.{sender}"}},
            *(
                {
                    "url": mhd.INTENDED_RECIPIENT,
                    "valueReference": {
                        "type": "Organization",
                        "identifier": {"system": URA, "value": ura},
                    },
                }
                for ura in recipients
            ),
        ],
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": mhd.LIST_TYPES, "code": "submissionset"}]},
        "subject": {"reference": patient},
        "date": now,
        "entry": [{"item": {"reference": document}}],
    }
    return {
        "resourceType": "Bundle",
        "meta": {"profile": [f"{mhd.MHD}/StructureDefinition/IHE.MHD.Minimal.ProvideBundle"]},
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": submission_set,
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": document,
                "resource": reference,
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": content_type,
                    "data": base64.b64encode(content).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
            {
                "fullUrl": patient,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": BSN, "value": bsn}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={BSN}|{bsn}",
                },
            },
        ],
    }
