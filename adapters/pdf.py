"""A PDF document plus its metadata → Patient, DocumentReference and Binary.

The PDF says nothing machine-readable about whom it concerns, so the caller passes that in
``SourceInfo.metadata`` (or reads a JSON sidecar with ``pdf_metadata_from_sidecar``):

=====================  ========  =================================================================
key                    required  meaning
=====================  ========  =================================================================
``bsn``                yes       the patient's BSN, checked with the elfproef (invalid: error)
``type_code``          yes       LOINC document type, e.g. ``18842-5`` (discharge summary)
``type_display``       no        display text of the type code
``title``              no        document title
``date``               no        ISO 8601 date or date-time the document was made
``author``             no        author's name as text
``author_identifier``  no        ``{"system": …, "value": …}``; URA/AGB/UZI/BIG OIDs are normalised
``document_id``        no        the document's unique id (OID, UUID, or a local id); without it a
                                 UUID is derived from the sender's URA and the content's SHA-256,
                                 so the same file sent twice is still one document
``patient_name``       no        the patient's name as text
``patient_birth_date`` no        ISO 8601 date
``language``           no        BCP 47 language of the document, e.g. ``nl-NL``
=====================  ========  =================================================================

The bytes must be a PDF: ``%PDF-`` at the start, ``%%EOF`` near the end, and pypdf must be able to
open it and find at least one page (an encrypted PDF is accepted with a warning). Anything else is
``MalformedInput``.
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import pypdf

from ._bundle import TransactionBuilder, add_document, custodian
from ._datetime import iso_date, iso_datetime
from ._errors import MalformedInput, UnsafeInput
from ._identifiers import (
    BSN_SYSTEM,
    URI_SYSTEM,
    local_system,
    normalize_bsn,
    normalize_system,
    uri_identifier,
)
from ._model import Conversion, IssueLog, SourceInfo
from ._terminology import LOINC, is_language_tag

__all__ = ["METADATA_KEYS", "convert_pdf", "pdf_metadata_from_sidecar"]

MAX_PDF_BYTES = 64 * 1024 * 1024
MAX_SIDECAR_BYTES = 1024 * 1024
METADATA_KEYS = frozenset(
    {
        "bsn", "type_code", "type_display", "title", "date", "author", "author_identifier",
        "document_id", "patient_name", "patient_birth_date", "language",
    }
)  # fmt: skip
_LOINC_CODE = re.compile(r"\d{1,7}-\d")
# Derived document ids live in their own UUID namespace (uuid5 of the URA and content hash).
_DOCUMENT_NAMESPACE = uuid.UUID("6f1e3c8a-5a4b-4e7d-9c2f-0b8d7a6e5c41")
_MIME_SUFFICIENT = {
    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
}


def pdf_metadata_from_sidecar(data: bytes) -> dict[str, Any]:
    """Parse a JSON sidecar (an object with the keys in the table above) into metadata."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise UnsafeInput(
            f"sidecar of {len(data)} bytes exceeds the {MAX_SIDECAR_BYTES} byte bound"
        )
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedInput(f"sidecar is not valid JSON: {exc}", location="sidecar") from exc
    if not isinstance(parsed, dict):
        raise MalformedInput("sidecar must be a JSON object", location="sidecar")
    return parsed


def check_pdf(data: bytes, issues: IssueLog) -> None:
    """Raise ``MalformedInput`` unless ``data`` is a PDF that opens and has a page."""
    if len(data) > MAX_PDF_BYTES:
        raise UnsafeInput(f"PDF of {len(data)} bytes exceeds the {MAX_PDF_BYTES} byte bound")
    if not data.startswith(b"%PDF-"):
        raise MalformedInput("not a PDF: the file does not start with %PDF-", location="byte 0")
    if b"%%EOF" not in data[-1024:]:
        raise MalformedInput("not a complete PDF: no %%EOF at the end (truncated?)", location="end")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            issues.warning("pdf", "the PDF is encrypted; stored as sent")
            return
        pages = len(reader.pages)
    except Exception as exc:  # pypdf raises many types on broken files; all mean "does not open"
        raise MalformedInput(
            f"PDF does not open: {type(exc).__name__}: {exc}", location="pdf"
        ) from exc
    if pages < 1:
        raise MalformedInput("PDF has no pages", location="pdf")


def _text(metadata: Mapping[str, Any], key: str) -> str:
    value = metadata.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedInput(
            f"must be text, got {type(value).__name__}", location=f"metadata.{key}"
        )
    return value.strip()


def _master_identifier(
    metadata: Mapping[str, Any], data: bytes, source: SourceInfo, issues: IssueLog
) -> dict[str, str]:
    given = _text(metadata, "document_id")
    if given:
        return uri_identifier(given) or {
            "system": local_system(source.organization, "document"),
            "value": given,
        }
    digest = hashlib.sha256(data).hexdigest()
    derived = uuid.uuid5(_DOCUMENT_NAMESPACE, f"{source.organization}:{digest}")
    issues.information(
        "metadata.document_id", "no document id given; derived from the sender and the content"
    )
    return {"system": URI_SYSTEM, "value": f"urn:uuid:{derived}"}


def _author(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    author: dict[str, Any] = {}
    name = _text(metadata, "author")
    if name:
        author["display"] = name
    ident = metadata.get("author_identifier")
    if ident is not None:
        if (
            not isinstance(ident, dict)
            or not isinstance(ident.get("system"), str)
            or not isinstance(ident.get("value"), str)
            or not ident["value"].strip()
        ):
            raise MalformedInput(
                'expected {"system": "...", "value": "..."}', location="metadata.author_identifier"
            )
        author["identifier"] = {
            "system": normalize_system(ident["system"]),
            "value": ident["value"].strip(),
        }
    return author or None


def convert_pdf(data: bytes, source: SourceInfo) -> Conversion:
    """Map a PDF and ``source.metadata`` to Patient, DocumentReference and Binary."""
    metadata = source.metadata
    issues = IssueLog()
    check_pdf(data, issues)
    unknown = sorted(str(k) for k in metadata if k not in METADATA_KEYS)
    if unknown:
        issues.information("metadata", f"keys not used: {', '.join(unknown)}")
    raw_bsn = _text(metadata, "bsn")
    if not raw_bsn:
        raise MalformedInput("the patient's BSN is missing", location="metadata.bsn")
    type_code = _text(metadata, "type_code")
    if not _LOINC_CODE.fullmatch(type_code):
        raise MalformedInput(
            f"a LOINC document type code is required, got {type_code!r}",
            location="metadata.type_code",
        )
    builder = TransactionBuilder(issues)
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": _master_identifier(metadata, data, source, issues),
        "status": "current",
    }
    type_display = _text(metadata, "type_display")
    coding = {
        "system": LOINC,
        "code": type_code,
        **({"display": type_display} if type_display else {}),
    }
    document["type"] = {"coding": [coding], **({"text": type_display} if type_display else {})}
    bsn = normalize_bsn(raw_bsn)
    if bsn is None:
        issues.error("metadata.bsn", f"BSN {raw_bsn!r} fails the elfproef; no patient linked")
    else:
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": BSN_SYSTEM, "value": bsn}],
        }
        name = _text(metadata, "patient_name")
        if name:
            patient["name"] = [{"text": name}]
        birth = _text(metadata, "patient_birth_date")
        if birth:
            birth_date = iso_date(birth)
            if birth_date:
                patient["birthDate"] = birth_date
            else:
                issues.warning("metadata.patient_birth_date", f"{birth!r} is not a date; left out")
        document["subject"] = {"reference": builder.add_patient(patient, location="metadata.bsn")}
    extra: dict[str, Any] = {"format": _MIME_SUFFICIENT}
    raw_date = _text(metadata, "date")
    if raw_date:
        moment = iso_datetime(raw_date, source.zone)
        if moment is None:
            issues.warning("metadata.date", f"{raw_date!r} is not an ISO 8601 date; left out")
        else:
            extra["creation"] = moment
            if "T" in moment:
                document["date"] = moment
    author = _author(metadata)
    if author:
        document["author"] = [author]
    document["custodian"] = custodian(source.organization)
    title = _text(metadata, "title")
    if title:
        document["description"] = title
        extra["title"] = title
    language = _text(metadata, "language")
    if language and is_language_tag(language):
        extra["language"] = language
    elif language:
        issues.warning("metadata.language", f"{language!r} is not a language tag; left out")
    add_document(builder, document, [(data, "application/pdf", extra)], location="pdf")
    return Conversion("pdf", builder.build(), issues.items, sources=builder.sources)
