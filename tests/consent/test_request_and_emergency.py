"""AccessRequest and Emergency refuse what they cannot stand for."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from consent_builders import HOSPITAL_A, HOSPITAL_B, PATIENT, T0, request

from consent import (
    EMERGENCY_MAX_DURATION,
    AccessRequest,
    ConsentError,
    Emergency,
    InvalidEmergency,
    InvalidRequest,
    categories_of,
)


def make_request(**changes):
    fields = {
        "actor_org": HOSPITAL_B,
        "actor_org_types": frozenset({"Z3"}),
        "actor_id": "u1",
        "actor_role": "arts",
        "holder_org": HOSPITAL_A,
        "patient": PATIENT,
        "purpose": "TREAT",
        "action": "read",
        "resource_type": "Condition",
        "categories": categories_of("Condition"),
        "at": T0,
    }
    fields.update(changes)
    return AccessRequest(**fields)


@pytest.mark.parametrize(
    "changes, element",
    [
        ({"at": datetime(2025, 1, 1, 12)}, "AccessRequest.at"),
        ({"action": "delete"}, "AccessRequest.action"),
        ({"purpose": "MARKETING"}, "AccessRequest.purpose"),
        ({"categories": frozenset({"treatment"})}, "AccessRequest.categories"),
        ({"categories": frozenset({"problems"})}, "AccessRequest.categories"),
        ({"categories": categories_of("MedicationRequest")}, "AccessRequest.categories"),
        ({"data_date": datetime(2025, 1, 1)}, "AccessRequest.data_date"),
    ],
)
def test_request_built_wrongly_is_refused(changes, element):
    with pytest.raises(InvalidRequest) as caught:
        make_request(**changes)
    assert caught.value.element == element
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ConsentError)


def test_request_reads_a_data_date_as_the_start_of_that_dutch_day():
    r = request(data_date=date(2025, 1, 1))
    assert r.data_ts == datetime.fromisoformat("2025-01-01T00:00:00+01:00").timestamp()


def test_emergency_holds_for_the_default_window():
    e = Emergency.declare(
        actor_id="u1", actor_org=HOSPITAL_B, patient=PATIENT, reason="coma", at=T0
    )
    assert e.end - e.start == EMERGENCY_MAX_DURATION == timedelta(hours=4)


@pytest.mark.parametrize(
    "changes, element",
    [
        ({"reason": "   "}, "Emergency.reason"),
        ({"duration": timedelta(hours=4, seconds=1)}, "Emergency.end"),
        ({"duration": timedelta(0)}, "Emergency.end"),
        ({"at": datetime(2025, 1, 1, 12)}, "Emergency.start"),
    ],
)
def test_emergency_without_reason_or_beyond_its_limit_is_refused(changes, element):
    fields = {
        "actor_id": "u1",
        "actor_org": HOSPITAL_B,
        "patient": PATIENT,
        "reason": "coma",
        "at": T0,
    }
    fields.update(changes)
    with pytest.raises(InvalidEmergency) as caught:
        Emergency.declare(**fields)
    assert caught.value.element == element
