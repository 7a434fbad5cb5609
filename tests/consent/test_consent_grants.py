"""consent_grants: the precomputed rows agree exactly with consent_permits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from consent_builders import (
    HOSPITAL_A,
    HOSPITAL_B,
    PATIENT,
    PRACTICE_C,
    T0,
    TYPES,
    agreement,
    consent,
    provision,
    request,
)
from consent_strategies import ORGS, PURPOSES, agreement_sets, consent_sets, requests
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    InvalidRequest,
    NetworkPolicy,
    PolicyFacts,
    agreement_grants,
    consent_grants,
    consent_permits,
    decide,
    read_granted,
)

GRANTEES = {org: TYPES[org] for org in ORGS}
# Covers every read of the random requests: with it, most reads a grant admits have exactly one
# covering agreement, and the random agreements make some have several.
NETWORK_AGREEMENT = agreement(
    "network",
    parties=ORGS,
    purposes=PURPOSES,
    categories=("treatment",),
    valid_from=date(2000, 1, 1),
)


def grants_for(consents, policy=NetworkPolicy(), **kw):
    return consent_grants(PATIENT, consents, GRANTEES, ORGS, policy, **kw)


@settings(max_examples=300, deadline=None, database=None)
@given(
    consent_sets(),
    st.sampled_from([NetworkPolicy("opt-in"), NetworkPolicy("opt-out")]),
    st.lists(requests(actions=("read",)), min_size=1, max_size=25),
)
def test_a_grant_matches_exactly_when_consent_permits(consents, policy, sample):
    grants = grants_for(consents, policy, purposes=PURPOSES)
    for r in sample:
        permitted = consent_permits(r, consents, policy).permit
        matching = [g for g in grants if g.matches(r)]
        assert bool(matching) == permitted, (r, consent_permits(r, consents, policy), matching)
        for g in matching:  # the row names the consents that permit the request
            assert g.consent_ids == consent_permits(r, consents, policy).consent_ids


@settings(max_examples=300, deadline=None, database=None)
@given(
    consent_sets(),
    st.sampled_from([NetworkPolicy("opt-in"), NetworkPolicy("opt-out")]),
    agreement_sets(),
    st.lists(requests(actions=("read",), other_organisation=True), min_size=1, max_size=25),
)
def test_a_read_the_grants_admit_is_decided_as_read_granted_says(consents, policy, found, sample):
    """What the gateway's audit takes from its SQL: the matching consent grant and the one
    agreement grant covering a read stand for decide's decision."""
    found = (NETWORK_AGREEMENT, *found)
    grants = grants_for(consents, policy, purposes=PURPOSES)
    covering_rows = agreement_grants(found)
    facts = PolicyFacts(consents, found, policy=policy)
    for r in sample:
        matching = [g for g in grants if g.matches(r)]
        covering = {a.agreement_id for a in covering_rows if a.matches(r)}
        decision = decide(r, facts)
        if matching and len(covering) == 1:
            assert read_granted(r, matching[0].consent_ids, covering.pop()) == decision
        else:
            assert not decision.permit or len(covering) > 1, (r, matching, covering, decision)


@pytest.mark.parametrize(
    "r",
    [
        request(action="push", actor_org=HOSPITAL_B, holder_org=HOSPITAL_A),
        request(actor_org=HOSPITAL_A, holder_org=HOSPITAL_A),
    ],
    ids=["push", "own data"],
)
def test_read_granted_is_only_for_reads_of_another_organisations_data(r):
    with pytest.raises(ValueError, match="reads of another organisation"):
        read_granted(r, ("c1",), "a1")


def test_no_consent_under_opt_in_grants_nothing():
    assert grants_for([]) == []


def test_no_consent_under_opt_out_grants_everything_in_one_row_per_cell():
    grants = grants_for([], NetworkPolicy("opt-out"))
    assert {g.category for g in grants} == {"treatment"}
    assert len(grants) == len(ORGS) * len(ORGS) * 3  # TREAT, ETREAT, BTG
    assert all(g.covers_dated and g.covers_undated for g in grants)
    assert all(g.valid_from is g.valid_to is g.data_from is g.data_to is None for g in grants)


def test_grants_merge_leaves_into_the_widest_category():
    tree = provision(
        "permit", to=[HOSPITAL_B], children=[provision("deny", types=["MedicationRequest"])]
    )
    grants = grants_for([consent("c1", tree)], purposes=["TREAT"])
    b_from_a = {
        g.category for g in grants if g.grantee_org == HOSPITAL_B and g.holder_org == HOSPITAL_A
    }
    assert b_from_a == {
        "results",
        "documents",
        "problems",
        "allergies",
        "procedures",
        "encounters",
        "immunizations",
        "demographics",
        "other-observations",
        "other",
        "medication-statements",
        "medication-dispenses",
        "medication-administrations",
        "medication-definitions",
    }
    assert not [g for g in grants if g.grantee_org == PRACTICE_C]


def test_grants_carry_validity_and_data_windows():
    rules = provision(
        "permit",
        to=[HOSPITAL_B],
        categories=["results"],
        period=("2025-01-01", "2025-12-31"),
        data_period=("2020-01-01", None),
    )
    (grant,) = [
        g
        for g in grants_for([consent("c1", rules)], purposes=["TREAT"])
        if g.holder_org == HOSPITAL_A
    ]
    assert grant.category == "results"
    assert grant.valid_from == datetime(2024, 12, 31, 23, tzinfo=UTC)
    assert grant.valid_to == datetime(2025, 12, 31, 23, tzinfo=UTC)
    assert grant.data_from == datetime(2019, 12, 31, 23, tzinfo=UTC)
    assert grant.data_to is None
    assert grant.covers_dated and not grant.covers_undated  # undated data is not covered
    assert grant.consent_ids == ("c1",)
    assert grant.matches(request("DiagnosticReport", data_date=date(2021, 1, 1)))
    assert not grant.matches(request("DiagnosticReport", data_date=None))
    assert not grant.matches(request("DiagnosticReport", data_date=date(2019, 12, 31)))
    assert not grant.matches(request("Condition", data_date=date(2021, 1, 1)))


def test_undated_data_can_be_granted_apart_from_dated_data():
    # Permitted everywhere by the opt-out default, except dated data of 2015 withheld by a nested
    # deny under a dated permit (undated data is outside that permit, so outside its exception).
    rules = provision(
        "permit",
        data_period=("2010-01-01", None),
        children=[provision("deny", data_period=("2015-01-01", "2015-12-31"))],
    )
    grants = [
        g
        for g in grants_for(
            [consent("c1", rules, policy_rule="OPTOUT")],
            NetworkPolicy("opt-out"),
            purposes=["TREAT"],
        )
        if g.grantee_org == HOSPITAL_B and g.holder_org == HOSPITAL_A
    ]
    undated = [g for g in grants if g.covers_undated]
    assert len(undated) == 1 and not undated[0].covers_dated
    assert any(g.matches(request(data_date=None)) for g in grants)
    assert not any(g.matches(request(data_date=date(2015, 6, 1))) for g in grants)
    assert any(g.matches(request(data_date=date(2016, 6, 1))) for g in grants)


def test_grants_respect_the_time_of_the_request():
    rules = provision("permit", period=(None, "2025-06-01"))
    grants = grants_for([consent("c1", rules)], purposes=["TREAT"])
    assert any(g.matches(request(at=datetime(2025, 5, 1, tzinfo=UTC))) for g in grants)
    assert not any(g.matches(request(at=T0)) for g in grants)


def test_unknown_purpose_is_refused():
    with pytest.raises(InvalidRequest):
        grants_for([], purposes=["MARKETING"])


def test_grants_ignore_other_patients_and_inactive_consents():
    theirs = consent("c1", provision("permit"), patient="999911132")
    revoked = consent("c2", provision("permit"), status="inactive")
    assert grants_for([theirs, revoked]) == []
