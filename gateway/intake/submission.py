"""Submit a converted export: documents as a Provide Document Bundle, other data as a
transaction, in one database transaction either way."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from adapters import Conversion
from gateway.context import Actor, RequestContext
from gateway.errors import GatewayError
from gateway.exchange import mhd
from gateway.exchange.compose import URA_OID
from gateway.exchange.iti65 import DocumentRecipient
from gateway.fhir.dutch_identifiers import URA
from gateway.service.bundles import BundleProcessor
from gateway.service.resources import ResourceService


@dataclass
class IntakeResult:
    """What happened to one converted input."""

    created: int = 0  # resources stored
    existing: int = 0  # resources that were there already (a re-sent message or file)
    notes: list[str] = field(default_factory=list)


class Intake:
    """Submits conversions for one sending organisation (and, for documents, its addressees)."""

    def __init__(
        self,
        service: ResourceService,
        organization: str,
        recipients: list[str],
        channel: str = "import",
    ) -> None:
        self.service = service
        self.bundles = BundleProcessor(service)
        self.documents = DocumentRecipient(service, self.bundles)
        self.recipients = recipients
        self.ctx = RequestContext(
            # The audit trail names the channel (zorgbrug-import, zorgbrug-mllp) as the agent.
            actor=Actor(kind="local", id=f"zorgbrug-{channel}", organization=organization),
            base_url="urn:zorgbrug:intake",
            return_preference="minimal",
        )

    async def submit(self, conversion: Conversion) -> IntakeResult:
        """Store the conversion's bundle; GatewayError when the gateway refuses it (nothing is
        stored then)."""
        bundle = conversion.bundle
        entries = bundle.get("entry") or []
        result = IntakeResult()
        if not entries:
            result.notes.append("nothing to store")
            return result
        has_documents = any(
            e.get("resource", {}).get("resourceType") == "DocumentReference" for e in entries
        )
        try:
            if has_documents:
                answer = await self.documents.provide(
                    self.ctx, self._as_provide_bundle(bundle), with_data=True
                )
            else:
                if self.recipients:
                    result.notes.append(
                        "only documents are addressed to other organisations; this data is "
                        "stored for consent-based access"
                    )
                answer = await self.bundles.process(self.ctx, bundle)
        except GatewayError as error:
            # The provide bundle starts with the SubmissionSet that _as_provide_bundle adds.
            sources = ["", *conversion.sources] if has_documents else conversion.sources
            raise _at_source(error, sources) from None
        for entry in orjson.loads(answer).get("entry", []):
            status = str(entry.get("response", {}).get("status", ""))
            if status.startswith("201"):
                result.created += 1
            elif status.startswith("200"):
                result.existing += 1
        return result

    def _as_provide_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """The converted documents with the SubmissionSet an ITI-65 bundle carries."""
        entries = list(bundle["entry"])
        documents = [e for e in entries if e["resource"]["resourceType"] == "DocumentReference"]
        subject = documents[0]["resource"].get("subject")
        organization = str(self.ctx.actor.organization)
        submission_set: dict[str, Any] = {
            "resourceType": "List",
            "extension": [
                {"url": mhd.SOURCE_ID, "valueIdentifier": {"value": f"{URA_OID}.{organization}"}},
                *(
                    {
                        "url": mhd.INTENDED_RECIPIENT,
                        "valueReference": {"identifier": {"system": URA, "value": ura}},
                    }
                    for ura in self.recipients
                ),
            ],
            "status": "current",
            "mode": "working",
            "code": {"coding": [{"system": mhd.LIST_TYPES, "code": "submissionset"}]},
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "entry": [{"item": {"reference": d["fullUrl"]}} for d in documents],
        }
        if subject:
            submission_set["subject"] = subject
        entries.insert(
            0,
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": submission_set,
                "request": {"method": "POST", "url": "List"},
            },
        )
        return bundle | {"entry": entries}


_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\]")


def _at_source(error: GatewayError, sources: list[str]) -> GatewayError:
    """The gateway's refusal of an entry, naming where in the input the entry came from
    (``patienten.csv line 6: Bundle.entry[4]: …``)."""
    found = _ENTRY.match(error.diagnostics)
    position = int(found.group(1)) if found else -1
    source = sources[position] if 0 <= position < len(sources) else ""
    return error.prefixed(source) if source else error
