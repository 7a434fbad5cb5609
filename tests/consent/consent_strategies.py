"""Hypothesis strategies: random consents (as FHIR JSON, then parsed) and random requests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from consent_builders import (
    HOSPITAL_A,
    HOSPITAL_B,
    OBSERVATION_LAB,
    OTHER_PATIENT,
    PATIENT,
    PRACTICE_C,
    TYPES,
    consent_json,
    provision,
    request,
)
from hypothesis import strategies as st

from consent import AccessRequest, Agreement, AgreementDocument, PatientConsent, parse_consent
from consent._fhirtime import AMSTERDAM

ORGS = [HOSPITAL_A, HOSPITAL_B, PRACTICE_C]
ORG_TYPES = ["Z3", "Z4"]
PURPOSES = ["TREAT", "ETREAT", "BTG", "HRESCH"]
CATEGORIES = ["treatment", "results", "medication", "problems", "documents", "other-observations"]
MITZ = ["GGC002", "GGC012", "GGC013"]
RESOURCE_TYPES_IN_RULES = ["MedicationRequest", "Condition", "Observation", "DiagnosticReport"]
PERIOD_POINTS = ["2024-01-01", "2025-01-01", "2025-06-02", "2025-06-03", "2026-01-01"]
DATA_POINTS = ["2015-01-01", "2020-01-01", "2022-06-30"]
# (resource type, resource) of requests: every kind of leaf the rules above can tell apart.
RESOURCES: list[tuple[str, dict[str, Any] | None]] = [
    ("Condition", None),
    ("MedicationRequest", None),
    ("MedicationStatement", None),
    ("DiagnosticReport", None),
    ("Observation", OBSERVATION_LAB),
    ("Observation", {"resourceType": "Observation"}),
    ("Patient", None),
    ("DocumentReference", None),
    ("CarePlan", None),
]


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Absent two times out of three: most rules leave most elements open."""
    return st.one_of(st.just(()), st.just(()), strategy)


def _some(pool: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)


def _range(points: list[str]) -> st.SearchStrategy[tuple[str | None, str | None] | None]:
    bounded = st.lists(st.sampled_from(points), min_size=2, max_size=2, unique=True).map(sorted)
    return st.one_of(
        st.none(),
        st.none(),
        st.tuples(st.none(), st.sampled_from(points)),
        st.tuples(st.sampled_from(points), st.none()),
        bounded.map(tuple),
    )


# Built once: building strategies inside a composite on every draw is what makes tests slow.
_RECIPIENTS = _maybe(_some(ORGS))
_RECIPIENT_TYPES = _maybe(_some(ORG_TYPES))
_HOLDERS = _maybe(_some(ORGS))
_ACTIONS = _maybe(_some(["access", "use", "collect"]))
_PURPOSES = _maybe(_some(PURPOSES))
_SELECTORS = st.one_of(
    st.just({}),
    st.just({}),
    _some(CATEGORIES).map(lambda c: {"categories": c}),
    _some(MITZ).map(lambda c: {"mitz": c}),
    _some(RESOURCE_TYPES_IN_RULES).map(lambda t: {"types": t}),
)
_PERIODS = _range(PERIOD_POINTS)
_DATA_PERIODS = _range(DATA_POINTS)


@st.composite
def provisions(
    draw: st.DrawFn, depth: int = 0, kinds: tuple[str, ...] = ("permit", "deny")
) -> dict[str, Any]:
    """A random provision tree of up to three levels."""
    kind = draw(st.sampled_from(kinds))
    children = draw(st.lists(provisions(depth + 1, kinds), max_size=2)) if depth < 2 else []
    return provision(
        kind,
        to=draw(_RECIPIENTS),
        to_types=draw(_RECIPIENT_TYPES),
        held_by=draw(_HOLDERS),
        actions=draw(_ACTIONS),
        purposes=draw(_PURPOSES),
        period=draw(_PERIODS),
        data_period=draw(_DATA_PERIODS),
        children=children,
        **draw(_SELECTORS),
    )


@st.composite
def consent_jsons(
    draw: st.DrawFn, consent_id: str = "c1", kinds: tuple[str, ...] = ("permit", "deny")
) -> dict[str, Any]:
    return consent_json(
        consent_id,
        draw(provisions(0, kinds)),
        status=draw(st.sampled_from(["active"] * 6 + ["inactive", "draft"])),
        patient=draw(st.sampled_from([PATIENT] * 9 + [OTHER_PATIENT])),
        policy_rule=draw(st.sampled_from(["OPTIN", "OPTOUT"])),
    )


@st.composite
def consent_sets(draw: st.DrawFn, max_size: int = 3) -> list[PatientConsent]:
    n = draw(st.integers(0, max_size))
    return [parse_consent(draw(consent_jsons(f"c{i}"))) for i in range(n)]


def _instants(points: list[str]) -> st.SearchStrategy[datetime]:
    """Instants at, just before and just after each boundary, and anywhere in between."""
    exact = [datetime.fromisoformat(p).replace(tzinfo=AMSTERDAM).astimezone(UTC) for p in points]
    near = st.builds(
        lambda t, d: t + timedelta(microseconds=d),
        st.sampled_from(exact),
        st.sampled_from([-1, 0, 1, 3_600_000_000]),
    )
    anywhere = st.datetimes(
        min_value=datetime(2014, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    )
    return st.one_of(near, near, anywhere)


def data_dates() -> st.SearchStrategy[date | datetime | None]:
    exact_days = [date.fromisoformat(p) for p in DATA_POINTS]
    return st.one_of(
        st.none(),
        st.sampled_from(exact_days),
        st.builds(lambda d: d - timedelta(days=1), st.sampled_from(exact_days)),
        _instants(DATA_POINTS),
    )


REQUEST_TIMES = _instants(PERIOD_POINTS)
DATA_DATES = data_dates()
_ANY_PAIRS = st.sampled_from([(a, h) for a in ORGS for h in ORGS])
_OTHER_PAIRS = st.sampled_from([(a, h) for a in ORGS for h in ORGS if a != h])


@st.composite
def requests(
    draw: st.DrawFn,
    actions: tuple[str, ...] = ("read", "push"),
    purposes: tuple[str, ...] = tuple(PURPOSES),
    other_organisation: bool = False,
) -> AccessRequest:
    """A request; with ``other_organisation`` the actor never belongs to the holder."""
    resource_type, resource = draw(st.sampled_from(RESOURCES))
    actor, holder = draw(_OTHER_PAIRS if other_organisation else _ANY_PAIRS)
    return request(
        resource_type,
        resource=resource,
        actor_org=actor,
        holder_org=holder,
        actor_types=TYPES[actor],
        purpose=draw(st.sampled_from(purposes)),
        action=draw(st.sampled_from(actions)),
        at=draw(REQUEST_TIMES),
        data_date=draw(DATA_DATES),
    )


AGREEMENT_DAYS = [
    date(2024, 1, 1),
    date(2025, 1, 1),
    date(2025, 6, 2),
    date(2025, 6, 3),
    date(2026, 1, 1),
]
AGREEMENT_DOCUMENT = AgreementDocument(title="Verwerkersovereenkomst", url="Binary/signed")


@st.composite
def agreements(draw: st.DrawFn, number: int) -> Agreement:
    start = draw(st.sampled_from(AGREEMENT_DAYS))
    end = draw(st.one_of(st.none(), st.sampled_from([d for d in AGREEMENT_DAYS if d >= start])))
    return Agreement(
        id=f"a{number}",
        kind=draw(st.sampled_from(["processor", "data-sharing"])),
        parties=frozenset(draw(st.lists(st.sampled_from(ORGS), min_size=2, unique=True))),
        purposes=frozenset(draw(st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2))),
        categories=frozenset(draw(st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2))),
        valid_from=start,
        valid_to=end,
        status=draw(st.sampled_from(["active", "active", "ended"])),
        document=AGREEMENT_DOCUMENT,
    )


def agreement_sets(max_size: int = 3) -> st.SearchStrategy[tuple[Agreement, ...]]:
    """Up to ``max_size`` agreements, with distinct ids."""
    return st.integers(0, max_size).flatmap(lambda n: st.tuples(*(agreements(i) for i in range(n))))
