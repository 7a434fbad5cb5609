"""Properties of the decision that must hold for every consent and every request."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta

from consent_builders import ORG_TYPE_SYSTEM, PATIENT, consent_json, provision
from consent_strategies import DATA_DATES, ORGS, consent_jsons, consent_sets, requests
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    AccessRequest,
    Agreement,
    AgreementDocument,
    Emergency,
    NetworkPolicy,
    PolicyFacts,
    agreement_covers,
    decide,
    emergency_may_cover,
    parse_consent,
)

EVERYTHING = Agreement(
    id="network",
    kind="data-sharing",
    parties=frozenset(ORGS),
    purposes=frozenset({"TREAT", "HRESCH"}),
    categories=frozenset({"treatment"}),
    valid_from=__import__("datetime").date(2000, 1, 1),
    document=AgreementDocument(title="Netwerkovereenkomst", url="https://docs.example.org/n.pdf"),
)
POLICIES = st.sampled_from([NetworkPolicy("opt-in"), NetworkPolicy("opt-out")])
SETTINGS = settings(max_examples=300, deadline=None, database=None)


def facts(consents, policy, agreements=(EVERYTHING,), emergencies=()) -> PolicyFacts:
    return PolicyFacts(
        consents=tuple(consents), agreements=agreements, emergencies=emergencies, policy=policy
    )


def deny_for(r: AccessRequest, consent_id: str = "objection") -> dict:
    """An active objection that matches exactly ``r`` (recipient, holder, purpose, category)."""
    rules = provision(
        "deny",
        to=[r.actor_org],
        held_by=[r.holder_org],
        purposes=[r.purpose],
        categories=[r.leaf],
    )
    return consent_json(consent_id, rules, patient=r.patient, policy_rule="OPTOUT")


@SETTINGS
@given(consent_sets(), requests(other_organisation=True), POLICIES)
def test_a_matching_deny_turns_every_other_organisation_request_into_a_deny(consents, r, policy):
    objection = parse_consent(deny_for(r))
    d = decide(r, facts([*consents, objection], policy))
    assert not d.permit
    assert d.basis.rule.startswith("consent-deny:")


@SETTINGS
@given(consent_sets(), consent_jsons("extra", kinds=("deny",)), requests(), POLICIES)
def test_adding_a_deny_only_consent_never_turns_a_deny_into_a_permit(consents, extra, r, policy):
    before = decide(r, facts(consents, policy))
    after = decide(r, facts([*consents, parse_consent(extra)], policy))
    assert not (after.permit and not before.permit)


@SETTINGS
@given(consent_sets(), requests(), POLICIES)
def test_emergency_overrides_any_consent_deny_but_not_a_missing_agreement(consents, r, policy):
    r = _as(r, purpose="ETREAT", action="read")
    objection = parse_consent(deny_for(r))
    emergency = Emergency.declare(
        actor_id=r.actor_id, actor_org=r.actor_org, patient=r.patient, reason="acute", at=r.at
    )
    d = decide(r, facts([*consents, objection], policy, emergencies=[emergency]))
    unagreed = decide(
        r, facts([*consents, objection], policy, agreements=(), emergencies=[emergency])
    )
    if r.actor_org == r.holder_org:
        assert d.permit and unagreed.permit
    else:
        assert d.permit == (agreement_covers(r, facts([], policy).agreements) is not None)
        if d.permit:
            assert d.basis.kind == "emergency"
            assert {"audit-as-emergency", "notify-dpo"} <= d.obligations
        assert not unagreed.permit


@SETTINGS
@given(consent_sets(), requests(), POLICIES)
def test_emergencies_decide_only_what_emergency_may_cover_admits(consents, r, policy):
    """Where ``emergency_may_cover`` says no, the gateway does not read the emergencies."""
    emergency = Emergency.declare(
        actor_id=r.actor_id, actor_org=r.actor_org, patient=r.patient, reason="acute", at=r.at
    )
    without = decide(r, facts(consents, policy))
    with_emergency = decide(r, facts(consents, policy, emergencies=[emergency]))
    if not emergency_may_cover(r):
        assert with_emergency == without
    elif not without.permit:
        assert with_emergency.basis.kind == "emergency"


@SETTINGS
@given(requests(actions=("read",), other_organisation=True))
def test_no_consent_under_opt_in_denies_every_other_organisation_read(r):
    d = decide(r, facts([], NetworkPolicy("opt-in")))
    assert not d.permit
    assert d.basis.rule == "no-consent"


@SETTINGS
@given(consent_sets(), requests(other_organisation=True), POLICIES)
def test_without_agreement_other_organisations_are_denied_whatever_the_consents(
    consents, r, policy
):
    d = decide(r, facts(consents, policy, agreements=()))
    assert not d.permit
    assert d.basis.rule == "no-agreement"


@SETTINGS
@given(consent_sets(), requests(), POLICIES, st.booleans())
def test_own_organisation_is_always_permitted(consents, r, policy, with_agreement):
    r = _as(r, actor_org=r.holder_org)
    agreements = (EVERYTHING,) if with_agreement else ()
    d = decide(r, facts([*consents, parse_consent(deny_for(r))], policy, agreements))
    assert d.permit
    assert d.basis.rule == "own-organisation"


@SETTINGS
@given(
    consent_sets(),
    consent_jsons("revoked"),
    st.sampled_from(["inactive", "rejected", "draft", "proposed", "entered-in-error"]),
    requests(),
    POLICIES,
)
def test_a_consent_that_is_not_active_changes_nothing(consents, extra, status, r, policy):
    extra = dict(extra, status=status)
    before = decide(r, facts(consents, policy))
    after = decide(r, facts([*consents, parse_consent(extra)], policy))
    assert after.permit == before.permit
    assert after.basis.rule == before.basis.rule
    assert "revoked" not in after.basis.consent_ids


@SETTINGS
@given(consent_sets(), consent_jsons("expired"), requests(), POLICIES)
def test_an_expired_consent_never_permits(consents, extra, r, policy):
    expired = copy.deepcopy(extra)
    expired["status"] = "active"
    end = (r.at - timedelta(days=1)).date().isoformat()
    expired["provision"]["period"] = {"end": end}
    before = decide(r, facts(consents, policy))
    after = decide(r, facts([*consents, parse_consent(expired)], policy))
    assert after.permit == before.permit
    assert not (after.permit and "expired" in after.basis.consent_ids)


@SETTINGS
@given(consent_sets(), requests(), POLICIES)
def test_every_permit_names_its_basis_and_every_deny_its_rule(consents, r, policy):
    d = decide(r, facts(consents, policy))
    if d.permit and d.basis.kind == "agreement-and-consent":
        assert d.basis.agreement_id == "network"
        assert d.basis.consent_ids or d.basis.rule == "opt-out-default"
        active = {c.id for c in consents if c.active and c.patient == PATIENT}
        assert set(d.basis.consent_ids) <= active
    if not d.permit:
        assert d.basis.kind == "denied" and d.basis.rule
    for sentence in (d.explain(), d.explain("nl")):
        assert sentence.endswith(".") and "\n" not in sentence


def _as(r: AccessRequest, **changes) -> AccessRequest:
    return dataclasses.replace(r, **changes)


def test_the_strategies_cover_organisation_types():
    # The strategies name recipients by type through contained Organizations of this system.
    resource = consent_json("c1", provision("permit", to_types=["Z3"]))
    assert resource["contained"][0]["type"][0]["coding"][0]["system"] == ORG_TYPE_SYSTEM


@SETTINGS
@given(consent_sets(), requests(other_organisation=True), DATA_DATES, POLICIES)
def test_facts_that_judge_no_data_date_decide_every_data_date_alike(consents, r, other, policy):
    known = facts(consents, policy)
    moved = dataclasses.replace(r, data_date=other)
    if not known.judges_data_dates:
        assert decide(moved, known) == dataclasses.replace(decide(r, known), request=moved)
