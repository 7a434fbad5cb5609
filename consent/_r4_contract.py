"""Agreements stored as FHIR R4 ``Contract`` resources, so DPOs can read them over the API.

Mapping (the two functions are each other's inverse)::

    Agreement.id          Contract.identifier (system AGREEMENT_ID_SYSTEM) and Contract.id
    Agreement.kind        Contract.type (AGREEMENT_KIND_SYSTEM: processor | data-sharing)
    Agreement.status      Contract.status: active = executed, ended = terminated
    valid_from, valid_to  Contract.applies.start / .end (dates, both days included)
    parties               Contract.term[0].offer.party[].reference[].identifier (URA),
                          role AGREEMENT_PARTY_ROLE_SYSTEM#party
    categories            Contract.term[0].asset[0].type[] (DATA_CATEGORY_SYSTEM, with the Mitz
                          GGC code as a second coding where there is one)
    purposes              Contract.term[0].action[].intent (v3 ActReason), one action per purpose
    document              Contract.legallyBindingAttachment: title, url, contentType
                          application/pdf and the SHA-256 in extension SHA256_EXTENSION (FHIR's
                          Attachment.hash is defined as SHA-1, so the SHA-256 cannot go there)
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Final, cast

from consent._agreements import Agreement, AgreementDocument, AgreementKind, AgreementStatus
from consent._categories import DATA_CATEGORIES
from consent._errors import InvalidAgreement
from consent._terminology import (
    ACT_REASON_SYSTEM,
    ACT_REASON_SYSTEMS,
    AGREEMENT_ACTION_SYSTEM,
    AGREEMENT_ID_SYSTEM,
    AGREEMENT_KIND_SYSTEM,
    AGREEMENT_PARTY_ROLE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    MITZ_CATEGORY_SYSTEM,
    SHA256_EXTENSION,
    URA_SYSTEM,
    URA_SYSTEMS,
)

_STATUS_TO_FHIR: Final = {"active": "executed", "ended": "terminated"}
_STATUS_FROM_FHIR: Final = {v: k for k, v in _STATUS_TO_FHIR.items()}
_KIND_DISPLAY: Final = {
    "processor": "Verwerkersovereenkomst (processor agreement)",
    "data-sharing": "Gegevensuitwisselingsovereenkomst (data-sharing agreement)",
}
_ACTION_STATUS_SYSTEM: Final = "http://hl7.org/fhir/contract-actionstatus"
# Where each field of an Agreement lives in the Contract, to name it in errors.
_CONTRACT_ELEMENT: Final = {
    "Agreement.id": "Contract.identifier",
    "Agreement.parties": "Contract.term[0].offer.party",
    "Agreement.purposes": "Contract.term[0].action.intent",
    "Agreement.categories": "Contract.term[0].asset.type",
    "Agreement.valid_to": "Contract.applies.end",
    "Agreement.document.title": "Contract.legallyBindingAttachment.title",
    "Agreement.document.url": "Contract.legallyBindingAttachment.url",
    "Agreement.document.sha256": f"Contract.legallyBindingAttachment.extension({SHA256_EXTENSION})",
}


def agreement_to_contract(agreement: Agreement) -> dict[str, Any]:
    """The FHIR R4 Contract (JSON) that stores ``agreement``; see the module docstring."""
    a = agreement
    applies = {"start": a.valid_from.isoformat()}
    if a.valid_to is not None:
        applies["end"] = a.valid_to.isoformat()
    attachment: dict[str, Any] = {
        "contentType": "application/pdf",
        "url": a.document.url,
        "title": a.document.title,
    }
    if a.document.sha256 is not None:
        attachment["extension"] = [{"url": SHA256_EXTENSION, "valueString": a.document.sha256}]
    return {
        "resourceType": "Contract",
        "id": a.id,
        "identifier": [{"system": AGREEMENT_ID_SYSTEM, "value": a.id}],
        "status": _STATUS_TO_FHIR[a.status],
        "type": {
            "coding": [
                {"system": AGREEMENT_KIND_SYSTEM, "code": a.kind, "display": _KIND_DISPLAY[a.kind]}
            ]
        },
        "title": a.document.title,
        "applies": applies,
        "term": [
            {
                "offer": {
                    "party": [
                        {
                            "reference": [
                                {
                                    "type": "Organization",
                                    "identifier": {"system": URA_SYSTEM, "value": ura},
                                }
                            ],
                            "role": {
                                "coding": [{"system": AGREEMENT_PARTY_ROLE_SYSTEM, "code": "party"}]
                            },
                        }
                        for ura in sorted(a.parties)
                    ]
                },
                "asset": [{"type": [_category_concept(c) for c in sorted(a.categories)]}],
                "action": [
                    {
                        "type": {
                            "coding": [{"system": AGREEMENT_ACTION_SYSTEM, "code": "exchange"}]
                        },
                        "intent": {"coding": [{"system": ACT_REASON_SYSTEM, "code": purpose}]},
                        "status": {
                            "coding": [{"system": _ACTION_STATUS_SYSTEM, "code": "complete"}]
                        },
                    }
                    for purpose in sorted(a.purposes)
                ],
            }
        ],
        "legallyBindingAttachment": attachment,
    }


def agreement_from_contract(contract: Mapping[str, Any]) -> Agreement:
    """The agreement a Contract stores; ``InvalidAgreement`` names the element that is wrong."""
    c = contract
    if c.get("resourceType") != "Contract":
        raise InvalidAgreement(
            "Contract.resourceType", f"expected Contract, got {c.get('resourceType')!r}"
        )
    if c.get("modifierExtension"):
        raise InvalidAgreement(
            "Contract.modifierExtension", "modifier extensions are not understood"
        )
    agreement_id = _identifier(c)
    status = _STATUS_FROM_FHIR.get(c.get("status", ""))
    if status is None:
        raise InvalidAgreement(
            "Contract.status", f"{c.get('status')!r} is not executed (active) or terminated (ended)"
        )
    kind = _kind(c)
    valid_from, valid_to = _applies(c)
    term = _term(c)
    parties, purposes, categories = _parties(term), _purposes(term), _categories(term)
    try:
        return Agreement(
            id=agreement_id,
            kind=kind,
            parties=parties,
            purposes=purposes,
            categories=categories,
            valid_from=valid_from,
            valid_to=valid_to,
            status=cast(AgreementStatus, status),
            document=_document(c),
        )
    except InvalidAgreement as exc:  # name the Contract element, not the Agreement field
        raise InvalidAgreement(
            _CONTRACT_ELEMENT.get(exc.element, exc.element), exc.reason
        ) from None


def _category_concept(category: str) -> dict[str, Any]:
    codings = [{"system": DATA_CATEGORY_SYSTEM, "code": category}]
    mitz = DATA_CATEGORIES[category].mitz
    if mitz is not None:
        codings.append({"system": MITZ_CATEGORY_SYSTEM, "code": mitz})
    return {"coding": codings}


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [x for x in concept.get("coding") or () if isinstance(x, Mapping)]


def _identifier(c: Mapping[str, Any]) -> str:
    for ident in c.get("identifier") or ():
        if ident.get("system") == AGREEMENT_ID_SYSTEM and ident.get("value"):
            return str(ident["value"])
    raise InvalidAgreement(
        "Contract.identifier", f"no identifier with system {AGREEMENT_ID_SYSTEM}"
    )


def _kind(c: Mapping[str, Any]) -> AgreementKind:
    for coding in _codings(c.get("type")):
        if coding.get("system") == AGREEMENT_KIND_SYSTEM and coding.get("code") in _KIND_DISPLAY:
            return cast(AgreementKind, coding["code"])
    raise InvalidAgreement("Contract.type", "must be processor or data-sharing")


def _day(value: Any, element: str) -> date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidAgreement(element, f"{value!r} is not a date (YYYY-MM-DD)")


def _applies(c: Mapping[str, Any]) -> tuple[date, date | None]:
    applies = c.get("applies")
    if not isinstance(applies, Mapping) or "start" not in applies:
        raise InvalidAgreement("Contract.applies.start", "missing")
    start = _day(applies["start"], "Contract.applies.start")
    end = _day(applies["end"], "Contract.applies.end") if "end" in applies else None
    return start, end


def _term(c: Mapping[str, Any]) -> Mapping[str, Any]:
    terms: list[Any] = list(c.get("term") or [])
    if len(terms) != 1 or not isinstance(terms[0], Mapping):
        raise InvalidAgreement("Contract.term", "expected exactly one term")
    return cast(Mapping[str, Any], terms[0])


def _parties(term: Mapping[str, Any]) -> frozenset[str]:
    uras: set[str] = set()
    for i, party in enumerate((term.get("offer") or {}).get("party") or ()):
        element = f"Contract.term[0].offer.party[{i}]"
        if not any(
            x.get("system") == AGREEMENT_PARTY_ROLE_SYSTEM and x.get("code") == "party"
            for x in _codings(party.get("role"))
        ):
            raise InvalidAgreement(f"{element}.role", "must be party")
        for j, ref in enumerate(party.get("reference") or ()):
            ident = ref.get("identifier") or {}
            if ident.get("system") not in URA_SYSTEMS or not ident.get("value"):
                raise InvalidAgreement(f"{element}.reference[{j}]", "must identify a URA")
            uras.add(str(ident["value"]))
    return frozenset(uras)


def _purposes(term: Mapping[str, Any]) -> frozenset[str]:
    purposes: set[str] = set()
    for i, action in enumerate(term.get("action") or ()):
        codes = [
            x.get("code")
            for x in _codings(action.get("intent"))
            if x.get("system") in ACT_REASON_SYSTEMS
        ]
        if len(codes) != 1:
            raise InvalidAgreement(
                f"Contract.term[0].action[{i}].intent", "must hold one v3 ActReason purpose"
            )
        purposes.add(str(codes[0]))
    return frozenset(purposes)


def _categories(term: Mapping[str, Any]) -> frozenset[str]:
    categories: set[str] = set()
    for i, asset in enumerate(term.get("asset") or ()):
        for j, concept in enumerate(asset.get("type") or ()):
            codes = [
                x.get("code")
                for x in _codings(concept)
                if x.get("system") in (DATA_CATEGORY_SYSTEM, MITZ_CATEGORY_SYSTEM)
            ]
            if not codes:
                raise InvalidAgreement(
                    f"Contract.term[0].asset[{i}].type[{j}]", "is not a data category"
                )
            categories.add(str(codes[0]))
    return frozenset(categories)


def _document(c: Mapping[str, Any]) -> AgreementDocument:
    attachment = c.get("legallyBindingAttachment")
    if not isinstance(attachment, Mapping):
        raise InvalidAgreement(
            "Contract.legallyBindingAttachment", "missing; the signed agreement must be attached"
        )
    sha = [
        x.get("valueString")
        for x in attachment.get("extension") or ()
        if x.get("url") == SHA256_EXTENSION
    ]
    return AgreementDocument(
        title=str(attachment.get("title") or ""),
        url=str(attachment.get("url") or ""),
        sha256=str(sha[0]) if sha else None,
    )
