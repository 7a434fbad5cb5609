"""Agreements: validation, validity in time, coverage, and storage as FHIR R4 Contract."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest
from consent_builders import HOSPITAL_A, HOSPITAL_B, PRACTICE_C, agreement, request
from fhir.resources.R4B.contract import Contract
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    Agreement,
    AgreementDocument,
    InvalidAgreement,
    agreement_covers,
    agreement_from_contract,
    agreement_to_contract,
)

DOC = AgreementDocument(title="VO A-B 2025", url="https://docs.example.org/vo.pdf")


def make(**changes: Any) -> Agreement:
    fields: dict[str, Any] = {
        "id": "a1",
        "kind": "processor",
        "parties": frozenset({HOSPITAL_A, HOSPITAL_B}),
        "purposes": frozenset({"TREAT"}),
        "categories": frozenset({"treatment"}),
        "valid_from": date(2025, 1, 1),
        "document": DOC,
    }
    fields.update(changes)
    return Agreement(**fields)


@pytest.mark.parametrize(
    "changes, element, reason",
    [
        ({"id": ""}, "Agreement.id", "missing"),
        ({"kind": "joint-controller"}, "Agreement.kind", "not processor or data-sharing"),
        ({"status": "suspended"}, "Agreement.status", "not active or ended"),
        ({"parties": frozenset({HOSPITAL_A})}, "Agreement.parties", "at least two"),
        ({"purposes": frozenset()}, "Agreement.purposes", "at least one purpose"),
        ({"purposes": frozenset({"MARKETING"})}, "Agreement.purposes", "'MARKETING' is not known"),
        ({"categories": frozenset()}, "Agreement.categories", "explicitly"),
        ({"categories": frozenset({"GGC999"})}, "Agreement.categories", "'GGC999' is not known"),
        ({"valid_to": date(2024, 12, 31)}, "Agreement.valid_to", "before valid_from"),
    ],
)
def test_invalid_agreement_is_refused_with_its_element(changes, element, reason):
    with pytest.raises(InvalidAgreement) as caught:
        make(**changes)
    assert caught.value.element == element
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "title, url, sha, element",
    [
        ("", "https://x/a.pdf", None, "Agreement.document.title"),
        ("VO", " ", None, "Agreement.document.url"),
        ("VO", "https://x/a.pdf", "ABC", "Agreement.document.sha256"),
    ],
)
def test_invalid_agreement_document_is_refused(title, url, sha, element):
    with pytest.raises(InvalidAgreement) as caught:
        AgreementDocument(title=title, url=url, sha256=sha)
    assert caught.value.element == element


def test_mitz_codes_are_stored_as_our_categories():
    assert make(categories=frozenset({"GGC002", "GGC013"})).categories == {
        "treatment",
        "medication",
    }


@pytest.mark.parametrize(
    "valid_to, status, today, days, expected",
    [
        (date(2025, 3, 31), "active", date(2025, 3, 1), 30, True),
        (date(2025, 3, 31), "active", date(2025, 3, 1), 29, False),
        (date(2025, 3, 31), "active", date(2025, 3, 31), 0, True),
        (date(2025, 3, 31), "active", date(2025, 4, 1), 30, False),  # already expired
        (date(2025, 3, 31), "ended", date(2025, 3, 1), 30, False),
        (None, "active", date(2025, 3, 1), 10_000, False),
    ],
)
def test_expires_within(valid_to, status, today, days, expected):
    assert make(valid_to=valid_to, status=status).expires_within(days, today) is expected


def test_agreement_covers_returns_the_agreement_in_force():
    old = agreement("old", valid_to=date(2024, 12, 31))
    current = agreement("current", valid_from=date(2025, 1, 1))
    assert agreement_covers(request(), [old, current]) is current
    assert agreement_covers(request(actor_org=PRACTICE_C), [old, current]) is None


def test_agreement_covers_uses_the_dutch_calendar_day():
    # 2025-06-30 22:30 UTC is already 1 July in Amsterdam: an agreement ending 30 June has ended.
    from datetime import UTC, datetime

    late = datetime(2025, 6, 30, 22, 30, tzinfo=UTC)
    ending = agreement(valid_to=date(2025, 6, 30))
    assert agreement_covers(request(at=late), [ending]) is None
    assert agreement_covers(request(at=late.replace(hour=21)), [ending]) is ending


# -- Contract -------------------------------------------------------------------------------


FULL = make(
    id="vo-2025-17",
    kind="data-sharing",
    parties=frozenset({HOSPITAL_A, HOSPITAL_B, PRACTICE_C}),
    purposes=frozenset({"TREAT", "HRESCH"}),
    categories=frozenset({"results", "medication", "documents"}),
    valid_to=date(2027, 12, 31),
    status="ended",
    document=AgreementDocument(
        title="Gegevensuitwisseling regio Noord",
        url="https://docs.example.org/vo-17.pdf",
        sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ),
)


@pytest.mark.parametrize("original", [make(), FULL], ids=["minimal", "full"])
def test_contract_round_trip_and_r4_validity(original):
    contract = agreement_to_contract(original)
    Contract.model_validate(contract)  # R4B models, wire-compatible with R4 for Contract
    assert agreement_from_contract(contract) == original


def test_contract_reads_as_a_dpo_expects():
    contract = agreement_to_contract(FULL)
    assert contract["status"] == "terminated"
    assert contract["applies"] == {"start": "2025-01-01", "end": "2027-12-31"}
    assert contract["type"]["coding"][0]["code"] == "data-sharing"
    parties = [
        p["reference"][0]["identifier"]["value"] for p in contract["term"][0]["offer"]["party"]
    ]
    assert parties == sorted([HOSPITAL_A, HOSPITAL_B, PRACTICE_C])
    assert contract["legallyBindingAttachment"]["url"] == "https://docs.example.org/vo-17.pdf"
    mitz = [c for t in contract["term"][0]["asset"][0]["type"] for c in t["coding"]]
    assert {"system": "urn:oid:2.16.840.1.113883.2.4.3.111.5.10.1", "code": "GGC013"} in mitz


@given(
    parties=st.frozensets(
        st.sampled_from(["00000001", "00000002", "00000003", "00000004"]), min_size=2
    ),
    purposes=st.frozensets(st.sampled_from(["TREAT", "ETREAT", "HRESCH", "HOPERAT"]), min_size=1),
    categories=st.frozensets(
        st.sampled_from(["treatment", "results", "medication", "GGC012"]), min_size=1
    ),
    start=st.dates(date(2020, 1, 1), date(2030, 1, 1)),
    length=st.none() | st.integers(0, 3000),
    status=st.sampled_from(["active", "ended"]),
    kind=st.sampled_from(["processor", "data-sharing"]),
)
@settings(max_examples=60, deadline=None, database=None)
def test_any_agreement_round_trips_through_contract(
    parties, purposes, categories, start, length, status, kind
):
    from datetime import timedelta

    original = make(
        parties=parties,
        purposes=purposes,
        categories=categories,
        valid_from=start,
        valid_to=None if length is None else start + timedelta(days=length),
        status=status,
        kind=kind,
    )
    assert agreement_from_contract(agreement_to_contract(original)) == original


def _broken(path: str, value: Any) -> dict[str, Any]:
    contract = copy.deepcopy(agreement_to_contract(make()))
    *parents, last = path.split(".")
    node: Any = contract
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is None:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return contract


@pytest.mark.parametrize(
    "contract, element",
    [
        (_broken("resourceType", "Consent"), "Contract.resourceType"),
        (_broken("identifier", None), "Contract.identifier"),
        (_broken("status", "offered"), "Contract.status"),
        (_broken("type", None), "Contract.type"),
        (_broken("applies.start", None), "Contract.applies.start"),
        (_broken("applies.start", "2025-01-01T00:00:00Z"), "Contract.applies.start"),
        (_broken("term", []), "Contract.term"),
        (_broken("term.0.offer.party.1", None), "Contract.term[0].offer.party"),
        (
            _broken("term.0.offer.party.0.role.coding.0.code", "witness"),
            "Contract.term[0].offer.party[0].role",
        ),
        (
            _broken("term.0.asset.0.type.0.coding", [{"system": "urn:x", "code": "y"}]),
            "Contract.term[0].asset[0].type[0]",
        ),
        (
            _broken("term.0.action.0.intent.coding.0.system", "urn:x"),
            "Contract.term[0].action[0].intent",
        ),
        (_broken("term.0.action", []), "Contract.term[0].action.intent"),
        (_broken("legallyBindingAttachment", None), "Contract.legallyBindingAttachment"),
        (_broken("legallyBindingAttachment.url", None), "Contract.legallyBindingAttachment.url"),
        (
            _broken("modifierExtension", [{"url": "urn:x", "valueBoolean": True}]),
            "Contract.modifierExtension",
        ),
    ],
)
def test_invalid_contract_is_refused_naming_the_element(contract, element):
    with pytest.raises(InvalidAgreement) as caught:
        agreement_from_contract(contract)
    assert caught.value.element == element
    assert "\n" not in str(caught.value)
