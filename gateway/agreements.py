"""The network's agreements between organisations: processor and data-sharing agreements.

Stored as FHIR ``Contract`` resources of the network directory (consent.agreement_to_contract),
so every member, and its DPO, reads them over the API; the signed document is kept as an
encrypted Binary beside it. Adding, changing or ending one updates the agreement rows that
every read's consent check uses, in the same transaction.
"""

from __future__ import annotations

import base64
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from consent import (
    Agreement,
    AgreementDocument,
    InvalidAgreement,
    agreement_from_contract,
    agreement_to_contract,
)
from gateway.context import DIRECTORY_OPERATOR, RequestContext
from gateway.errors import GatewayError
from gateway.fhir.validation import validate_resource
from gateway.organizations import check_ura
from gateway.service.console import ConsoleChange
from gateway.service.resources import ResourceService

_CTX = RequestContext(actor=DIRECTORY_OPERATOR, base_url="urn:zorgbrug:agreements")
EXPIRY_WARNING_DAYS = 60


async def add_agreement(
    service: ResourceService,
    *,
    kind: str,
    parties: list[str],
    purposes: list[str],
    categories: list[str],
    valid_from: date,
    valid_to: date | None,
    document: Path | None,
    change: ConsoleChange,
) -> Agreement:
    """Record an agreement (and its signed document) with ``change``'s audit record;
    Unprocessable naming what is wrong."""
    for ura in parties:
        check_ura(ura)
    content = _read_document(document) if document else None
    agreement_id = str(uuid.uuid4())

    def work(conn: Connection) -> Agreement:
        for ura in parties:
            if service.policy.network(conn).by_ura(ura) is None:
                raise ValueError(f"organisation {ura} is not registered (zorgbrug orgs add)")
        if content is not None and document is not None:
            binary = service.create_in(
                conn,
                _CTX,
                "Binary",
                validate_resource(
                    {
                        "resourceType": "Binary",
                        "contentType": "application/pdf",
                        "data": base64.b64encode(content).decode(),
                    }
                ),
            )
            signed = AgreementDocument(
                title=document.name, url=f"Binary/{binary.res_id}", sha256=binary.blobs[0].sha256
            )
        else:
            signed = AgreementDocument(
                title="(no signed document recorded)", url="urn:zorgbrug:none"
            )
        agreement = _agreement(
            id=agreement_id,
            kind=kind,
            parties=frozenset(parties),
            purposes=frozenset(purposes),
            categories=frozenset(categories),
            valid_from=valid_from,
            valid_to=valid_to,
            document=signed,
        )
        _store(conn, service, agreement)
        return agreement

    return await change.write(service, work, DIRECTORY_OPERATOR)


async def list_agreements(service: ResourceService) -> tuple[Agreement, ...]:
    return await service.db.read(service.policy.agreements)


async def end_agreement(
    service: ResourceService, agreement_id: str, on: date, change: ConsoleChange
) -> Agreement:
    """End an agreement as of ``on`` (it stays on record, no longer in force)."""

    def work(conn: Connection) -> Agreement:
        found = next((a for a in service.policy.agreements(conn) if a.id == agreement_id), None)
        if found is None:
            raise ValueError(f"no agreement {agreement_id}")
        ended = _agreement(
            id=found.id,
            kind=found.kind,
            parties=found.parties,
            purposes=found.purposes,
            categories=found.categories,
            valid_from=found.valid_from,
            valid_to=min(found.valid_to or on, on) if found.valid_from <= on else found.valid_from,
            status="ended",
            document=found.document,
        )
        _store(conn, service, ended)
        return ended

    return await change.write(service, work, DIRECTORY_OPERATOR)


def _agreement(**fields: Any) -> Agreement:
    try:
        return Agreement(**fields)
    except InvalidAgreement as error:
        raise ValueError(str(error)) from None


def _store(conn: Connection, service: ResourceService, agreement: Agreement) -> None:
    contract = validate_resource(agreement_to_contract(agreement), "Contract")
    # Round-trips exactly (consent tests this); a failure here would be a defect of ours.
    assert agreement_from_contract(orjson.loads(orjson.dumps(contract))) == agreement
    try:
        service.update_in(conn, _CTX, "Contract", agreement.id, contract)
    except GatewayError as error:
        raise ValueError(error.diagnostics) from None


def _read_document(path: Path) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    if not content.startswith(b"%PDF-"):
        raise ValueError(f"{path} is not a PDF (the signed agreement is kept as PDF)")
    return content
