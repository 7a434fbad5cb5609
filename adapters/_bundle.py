"""Assembling the transaction Bundle that every adapter returns.

Rules kept here so no adapter has to remember them:

- every entry has a fresh ``urn:uuid:`` fullUrl, and references between entries use it;
- a resource with a stable business identifier is a conditional create
  (``request.ifNoneExist: identifier=<system>|<value>``), so a re-sent input does not duplicate it;
  an entry whose input states a change (an ADT discharge, a corrected lab result) is a conditional
  update instead (``PUT Type?identifier=…``), so the new state replaces the old one;
- the same resource type with the same condition is added once: later occurrences resolve to the
  first entry (a transaction may not create the same thing twice);
- documents are a DocumentReference whose attachment points at a Binary entry, with the SHA-1
  hash and size of the bytes (see ``add_document``).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import Any
from urllib.parse import quote

from ._identifiers import BSN_SYSTEM, ura_reference
from ._model import IssueLog

# Characters that FHIR search gives a meaning inside a token value; they are escaped with "\".
_TOKEN_SPECIALS = str.maketrans({"\\": "\\\\", "|": "\\|", ",": "\\,", "$": "\\$"})


def identifier_query(system: str | None, value: str) -> str:
    """``identifier=<system>|<value>`` with the parts escaped for a FHIR search URL."""
    token = quote(value.translate(_TOKEN_SPECIALS), safe=":/@")
    if system:
        token = f"{quote(system, safe=':/@')}|{token}"
    return f"identifier={token}"


class TransactionBuilder:
    """Collects the entries of one transaction Bundle."""

    def __init__(self, issues: IssueLog) -> None:
        self._issues = issues
        self._entries: list[dict[str, Any]] = []
        self.sources: list[str] = []  # where each entry came from (Conversion.sources)
        self._by_condition: dict[tuple[str, str], str] = {}
        self._resources: dict[str, dict[str, Any]] = {}

    def add(
        self,
        resource: dict[str, Any],
        *,
        identifier: dict[str, Any] | None = None,
        update: bool = False,
        location: str = "",
    ) -> str:
        """Add ``resource`` and return the fullUrl that references it.

        With ``identifier`` (a FHIR Identifier with system and value), the entry is a conditional
        create on it, or a conditional update when ``update`` is true. A second resource of the
        same type with the same identifier is not added when it is the same resource (its
        fullUrl is the first one's); when it differs, it is added without the identifier and a
        warning.
        """
        resource_type = resource["resourceType"]
        request: dict[str, Any] = {"method": "POST", "url": resource_type}
        if identifier is not None and identifier.get("value"):
            condition = identifier_query(identifier.get("system"), identifier["value"])
            first = self._by_condition.get((resource_type, condition))
            if first is not None and self._resources[first] == resource:
                self._issues.information(
                    location or resource_type,
                    f"{resource_type} with {condition} occurs more than once; kept the first",
                )
                return first
            if first is not None:
                # Same identifier, different content: a sender reusing ids. Both are kept; the
                # second loses the identifier, or a later re-send would match two resources.
                self._issues.warning(
                    location or resource_type,
                    f"{resource_type} reuses {condition} of a different entry; added without it",
                )
                resource = {k: v for k, v in resource.items() if k != "identifier"}
                identifier = None
        if identifier is not None and identifier.get("value"):
            if update:
                request = {"method": "PUT", "url": f"{resource_type}?{condition}"}
            else:
                request["ifNoneExist"] = condition
        full_url = f"urn:uuid:{uuid.uuid4()}"
        if identifier is not None and identifier.get("value"):
            self._by_condition[(resource_type, condition)] = full_url
            self._resources[full_url] = resource
        self._entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        self.sources.append(location)
        return full_url

    def add_patient(self, patient: dict[str, Any], *, location: str = "") -> str:
        """Add a Patient, conditional on its BSN when it has one, else on its first identifier."""
        identifiers = patient.get("identifier") or []
        bsn = next((i for i in identifiers if i.get("system") == BSN_SYSTEM), None)
        key = bsn or next((i for i in identifiers if i.get("system") and i.get("value")), None)
        return self.add(patient, identifier=key, location=location)

    def __len__(self) -> int:
        return len(self._entries)

    def build(self) -> dict[str, Any]:
        """The transaction Bundle (entries in the order they were added)."""
        return {"resourceType": "Bundle", "type": "transaction", "entry": list(self._entries)}


def add_document(
    builder: TransactionBuilder,
    document: dict[str, Any],
    contents: list[tuple[bytes, str, dict[str, Any]]],
    *,
    location: str = "",
) -> str:
    """Add a DocumentReference whose contents are stored as Binary entries.

    ``document`` is the DocumentReference without ``content``; ``contents`` lists, per content,
    the bytes, their MIME type and extra Attachment/content fields (``title``, ``creation``,
    ``language``, ``format``). The attachment gets ``url`` (the Binary's fullUrl), ``size`` and
    ``hash`` (base64 SHA-1, as FHIR R4 defines it). The DocumentReference is conditional on its
    ``masterIdentifier``; on a re-send it is not created again.
    """
    document = dict(document)
    document["content"] = []
    binaries: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for data, content_type, extra in contents:
        binary = {
            "resourceType": "Binary",
            "contentType": content_type,
            "data": base64.b64encode(data).decode("ascii"),
        }
        attachment: dict[str, Any] = {
            "contentType": content_type,
            "size": len(data),
            "hash": base64.b64encode(hashlib.sha1(data).digest()).decode("ascii"),  # noqa: S324
        }
        content: dict[str, Any] = {"attachment": attachment}
        for key, value in extra.items():
            if key == "format":
                content["format"] = value
            else:
                attachment[key] = value
        document["content"].append(content)
        binaries.append((binary, attachment))
    # Binaries go first so that a reader of the Bundle meets what the reference points at.
    for binary, attachment in binaries:
        attachment["url"] = builder.add(binary)
    return builder.add(document, identifier=document.get("masterIdentifier"), location=location)


def custodian(organization: str) -> dict[str, object]:
    """The custodian Reference of documents sent by ``organization`` (a URA)."""
    return ura_reference(organization)
