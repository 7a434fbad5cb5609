"""The decision rules, one behaviour per test, through ``decide``."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from consent_builders import (
    HOSPITAL_A,
    HOSPITAL_B,
    OBSERVATION_LAB,
    OTHER_PATIENT,
    PATIENT,
    PRACTICE_C,
    T0,
    agreement,
    consent,
    provision,
    request,
)

from consent import (
    DATA_CATEGORIES,
    OBLIGATION_AUDIT_AS_EMERGENCY,
    OBLIGATION_NOTIFY_DPO,
    AccessDecision,
    Emergency,
    NetworkPolicy,
    PolicyFacts,
    category_title,
    decide,
)

OPT_OUT = NetworkPolicy("opt-out")
AGREEMENT = agreement()
PERMIT_B = provision("permit", to=[HOSPITAL_B], purposes=["TREAT"])


def facts(*consents, agreements=(AGREEMENT,), emergencies=(), policy=None) -> PolicyFacts:
    return PolicyFacts(
        consents=consents,
        agreements=agreements,
        emergencies=emergencies,
        policy=policy or NetworkPolicy(),
    )


def assert_denied(decision: AccessDecision, rule: str) -> None:
    assert not decision.permit, decision.explain()
    assert decision.basis.kind == "denied"
    assert decision.basis.rule == rule
    assert decision.obligations == frozenset()


def assert_permitted(decision: AccessDecision, rule: str) -> None:
    assert decision.permit, decision.explain()
    assert decision.basis.rule == rule


# -- own organisation -------------------------------------------------------------------------


def test_own_organisation_is_always_permitted_without_agreement_or_consent():
    objection = consent("c1", provision("deny"))
    d = decide(request(actor_org=HOSPITAL_A), facts(objection, agreements=()))
    assert_permitted(d, "own-organisation")
    assert d.basis.kind == "own-organisation"


# -- agreements -------------------------------------------------------------------------------


def test_no_agreement_denies_other_organisation_despite_consent():
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=()))
    assert_denied(d, "no-agreement")


def test_agreement_between_other_parties_does_not_count():
    other = agreement(parties=[HOSPITAL_A, PRACTICE_C])
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=[other]))
    assert_denied(d, "no-agreement")


def test_agreement_not_covering_the_purpose_denies():
    research_only = agreement(purposes=["HRESCH"])
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=[research_only]))
    assert_denied(d, "agreement-not-covering")


def test_agreement_limited_to_medication_denies_problems():
    medication_only = agreement(categories=["GGC013"])
    d = decide(request("Condition"), facts(consent("c1", PERMIT_B), agreements=[medication_only]))
    assert_denied(d, "agreement-not-covering")


def test_agreement_limited_to_medication_permits_prescriptions():
    medication_only = agreement(categories=["medication"])
    d = decide(
        request("MedicationRequest"), facts(consent("c1", PERMIT_B), agreements=[medication_only])
    )
    assert_permitted(d, "consent")
    assert d.basis.agreement_id == "a1"


def test_agreement_past_its_last_day_denies_as_expired():
    ended = agreement(valid_to=T0.date() - timedelta(days=1))
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=[ended]))
    assert_denied(d, "agreement-expired")
    assert d.basis.agreement_id == "a1"


def test_agreement_on_its_last_day_still_permits():
    last_day = agreement(valid_to=T0.date())
    assert decide(request(), facts(consent("c1", PERMIT_B), agreements=[last_day])).permit


def test_ended_agreement_denies_as_expired():
    ended = agreement(status="ended")
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=[ended]))
    assert_denied(d, "agreement-expired")


def test_agreement_not_yet_in_force_denies():
    future = agreement(valid_from=T0.date() + timedelta(days=1))
    d = decide(request(), facts(consent("c1", PERMIT_B), agreements=[future]))
    assert_denied(d, "agreement-not-yet-valid")


def test_multi_party_agreement_binds_any_two_of_its_parties():
    network = agreement(parties=[HOSPITAL_A, HOSPITAL_B, PRACTICE_C])
    permit_c = provision("permit", to=[PRACTICE_C])
    d = decide(request(actor_org=PRACTICE_C), facts(consent("c1", permit_c), agreements=[network]))
    assert_permitted(d, "consent")


def test_agreement_for_treat_covers_emergency_treatment_requests():
    d = decide(request(purpose="ETREAT"), facts(consent("c1", provision("permit"))))
    assert_permitted(d, "consent")


# -- default policy ---------------------------------------------------------------------------


def test_no_consent_denies_under_opt_in():
    assert_denied(decide(request(), facts()), "no-consent")


def test_no_consent_permits_under_opt_out_when_the_agreement_holds():
    d = decide(request(), facts(policy=OPT_OUT))
    assert_permitted(d, "opt-out-default")
    assert d.basis.consent_ids == ()
    assert d.basis.agreement_id == "a1"


def test_opt_out_still_needs_the_agreement():
    assert_denied(decide(request(), facts(agreements=(), policy=OPT_OUT)), "no-agreement")


def test_opt_out_default_is_lifted_by_an_objection():
    objection = consent("c1", provision("deny"), policy_rule="OPTOUT")
    assert_denied(decide(request(), facts(objection, policy=OPT_OUT)), "consent-deny:c1")


def test_explicit_optin_consent_replaces_opt_out_default_for_that_patient():
    only_c = consent("c1", provision("permit", to=[PRACTICE_C]), policy_rule="OPTIN")
    assert_denied(decide(request(), facts(only_c, policy=OPT_OUT)), "default-deny")


def test_optout_recorded_consent_keeps_opt_out_default_for_others():
    deny_c = consent("c1", provision("deny", to=[PRACTICE_C]), policy_rule="OPTOUT")
    assert_permitted(decide(request(), facts(deny_c, policy=OPT_OUT)), "opt-out-default")


# -- who may receive --------------------------------------------------------------------------


def test_consent_for_the_requesting_organisation_permits():
    d = decide(request(), facts(consent("c1", PERMIT_B)))
    assert_permitted(d, "consent")
    assert d.basis.kind == "agreement-and-consent"
    assert d.basis.consent_ids == ("c1",)
    assert d.basis.agreement_id == "a1"


def test_consent_for_another_organisation_denies_by_default():
    d = decide(request(), facts(consent("c1", provision("permit", to=[PRACTICE_C]))))
    assert_denied(d, "default-deny")


def test_consent_for_an_organisation_type_permits_organisations_of_that_type():
    hospitals = consent("c1", provision("permit", to_types=["Z3"]))
    assert decide(request(actor_types=["Z3"]), facts(hospitals)).permit
    assert not decide(request(actor_types=["Z4"]), facts(hospitals)).permit


def test_consent_limited_to_one_holder_denies_data_of_other_holders():
    only_a = consent("c1", provision("permit", held_by=[HOSPITAL_A]))
    network = agreement(parties=[HOSPITAL_A, HOSPITAL_B, PRACTICE_C])
    assert decide(request(holder_org=HOSPITAL_A), facts(only_a, agreements=[network])).permit
    d = decide(request(holder_org=PRACTICE_C), facts(only_a, agreements=[network]))
    assert_denied(d, "default-deny")


def test_holder_and_recipient_actors_must_both_match():
    a_to_b = consent("c1", provision("permit", held_by=[HOSPITAL_A], to=[HOSPITAL_B]))
    network = agreement(parties=[HOSPITAL_A, HOSPITAL_B, PRACTICE_C])
    assert decide(request(), facts(a_to_b, agreements=[network])).permit
    assert not decide(request(actor_org=PRACTICE_C), facts(a_to_b, agreements=[network])).permit


def test_consent_of_another_patient_is_ignored():
    theirs = consent("c1", PERMIT_B, patient=OTHER_PATIENT)
    assert_denied(decide(request(), facts(theirs)), "no-consent")


# -- what: categories and purposes ------------------------------------------------------------


def test_category_limited_consent_denies_medication():
    results_only = consent("c1", provision("permit", categories=["results"]))
    assert_denied(decide(request("MedicationStatement"), facts(results_only)), "default-deny")


def test_category_limited_consent_permits_results():
    results_only = consent("c1", provision("permit", categories=["results"]))
    assert decide(request("DiagnosticReport"), facts(results_only)).permit
    assert decide(request("Observation", resource=OBSERVATION_LAB), facts(results_only)).permit


def test_results_consent_does_not_cover_other_observations():
    results_only = consent("c1", provision("permit", categories=["results"]))
    social = {"resourceType": "Observation"}
    assert not decide(request("Observation", resource=social), facts(results_only)).permit


def test_mitz_treatment_code_covers_every_category():
    treatment = consent("c1", provision("permit", mitz=["GGC002"]))
    for rtype in ("Condition", "MedicationRequest", "DocumentReference", "Patient", "CarePlan"):
        assert decide(request(rtype), facts(treatment)).permit, rtype


def test_mitz_medication_code_selects_medication_only():
    medication = consent("c1", provision("permit", mitz=["GGC013"]))
    assert decide(request("MedicationDispense"), facts(medication)).permit
    assert not decide(request("Condition"), facts(medication)).permit


def test_resource_type_class_selects_that_type_and_not_its_siblings():
    prescriptions = consent("c1", provision("permit", types=["MedicationRequest"]))
    assert decide(request("MedicationRequest"), facts(prescriptions)).permit
    assert not decide(request("MedicationStatement"), facts(prescriptions)).permit


def test_purpose_limited_consent_denies_other_purposes():
    treatment_only = consent("c1", provision("permit", purposes=["TREAT"]))
    research = agreement(purposes=["TREAT", "HRESCH"])
    d = decide(request(purpose="HRESCH"), facts(treatment_only, agreements=[research]))
    assert_denied(d, "default-deny")


def test_treatment_consent_covers_emergency_treatment_purpose():
    treatment_only = consent("c1", provision("permit", purposes=["TREAT"]))
    assert decide(request(purpose="ETREAT"), facts(treatment_only)).permit


def test_emergency_treatment_consent_does_not_cover_plain_treatment():
    emergency_only = consent("c1", provision("permit", purposes=["ETREAT"]))
    assert not decide(request(purpose="TREAT"), facts(emergency_only)).permit


# -- deny and exceptions ----------------------------------------------------------------------


def test_deny_in_one_consent_wins_over_permit_in_another():
    permit = consent("c1", PERMIT_B)
    objection = consent("c2", provision("deny", to=[HOSPITAL_B]), policy_rule="OPTOUT")
    d = decide(request(), facts(permit, objection))
    assert_denied(d, "consent-deny:c2")
    assert d.basis.provision == "Consent.provision"


def test_nested_deny_exception_denies_what_it_matches():
    tree = provision("permit", children=[provision("deny", categories=["medication"])])
    c = consent("c1", tree)
    d = decide(request("MedicationRequest"), facts(c))
    assert_denied(d, "consent-deny:c1")
    assert d.basis.provision == "Consent.provision.provision[0]"
    assert decide(request("Condition"), facts(c)).permit


def test_nested_permit_exception_opens_a_deny():
    tree = provision("deny", children=[provision("permit", categories=["results"])])
    c = consent("c1", tree, policy_rule="OPTOUT")
    assert decide(request("DiagnosticReport"), facts(c)).permit
    assert_denied(decide(request("Condition"), facts(c)), "consent-deny:c1")


def test_exception_applies_only_within_its_parent():
    # The permit exception names B, but sits under a deny that only covers C: B is not matched
    # by the parent, so the exception does not grant anything to B.
    tree = provision("deny", to=[PRACTICE_C], children=[provision("permit", to=[HOSPITAL_B])])
    assert_denied(decide(request(), facts(consent("c1", tree))), "default-deny")


def test_deeper_exception_overrides_its_parent_recursively():
    tree = provision(
        "permit",
        children=[
            provision(
                "deny",
                categories=["medication"],
                children=[provision("permit", types=["MedicationStatement"])],
            )
        ],
    )
    c = consent("c1", tree)
    assert decide(request("MedicationStatement"), facts(c)).permit
    assert not decide(request("MedicationRequest"), facts(c)).permit


def test_deny_wins_among_matching_sibling_exceptions():
    tree = provision(
        "permit",
        children=[
            provision("permit", categories=["medication"]),
            provision("deny", types=["MedicationRequest"]),
        ],
    )
    d = decide(request("MedicationRequest"), facts(consent("c1", tree)))
    assert_denied(d, "consent-deny:c1")
    assert d.basis.provision == "Consent.provision.provision[1]"


# -- time -------------------------------------------------------------------------------------


def test_consent_before_its_period_does_not_permit():
    later = consent("c1", provision("permit", period=("2025-07-01", None)))
    assert_denied(decide(request(), facts(later)), "no-consent")


def test_expired_consent_denies_as_consent_expired():
    expired = consent("c1", provision("permit", period=("2024-01-01", "2025-06-01")))
    d = decide(request(), facts(expired))
    assert_denied(d, "consent-expired")
    assert d.basis.consent_ids == ("c1",)


def test_consent_period_ending_on_a_date_includes_that_whole_day():
    today = consent("c1", provision("permit", period=("2024-01-01", "2025-06-02")))
    assert decide(request(at=T0.replace(hour=21)), facts(today)).permit


def test_expired_consent_that_did_not_cover_the_request_is_not_called_expired():
    expired_for_c = consent("c1", provision("permit", to=[PRACTICE_C], period=(None, "2025-01-01")))
    assert_denied(decide(request(), facts(expired_for_c)), "no-consent")


def test_nested_rule_period_limits_only_that_rule():
    tree = provision("permit", children=[provision("deny", period=("2025-06-01", "2025-06-30"))])
    c = consent("c1", tree)
    assert not decide(request(at=T0), facts(c)).permit
    assert decide(request(at=T0 + timedelta(days=40)), facts(c)).permit


def test_data_period_permit_covers_data_dated_inside_it():
    c = consent("c1", provision("permit", data_period=("2020-01-01", "2022-12-31")))
    assert decide(request(data_date=date(2021, 5, 1)), facts(c)).permit
    assert decide(request(data_date=date(2022, 12, 31)), facts(c)).permit


def test_data_period_permit_does_not_cover_data_outside_it():
    c = consent("c1", provision("permit", data_period=("2020-01-01", "2022-12-31")))
    assert not decide(request(data_date=date(2023, 1, 1)), facts(c)).permit
    assert not decide(request(data_date=date(2019, 12, 31)), facts(c)).permit


def test_data_period_permit_does_not_cover_undated_data():
    c = consent("c1", provision("permit", data_period=("2020-01-01", None)))
    assert_denied(decide(request(data_date=None), facts(c)), "default-deny")


def test_data_period_deny_denies_undated_data():
    tree = provision(
        "permit", children=[provision("deny", data_period=("2015-01-01", "2015-12-31"))]
    )
    c = consent("c1", tree)
    assert_denied(decide(request(data_date=None), facts(c)), "consent-deny:c1")
    assert decide(request(data_date=date(2016, 1, 1)), facts(c)).permit
    assert not decide(request(data_date=date(2015, 3, 1)), facts(c)).permit


# -- status -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["draft", "proposed", "rejected", "inactive", "entered-in-error"]
)
def test_consent_that_is_not_active_never_permits(status):
    c = consent("c1", PERMIT_B, status=status)
    assert_denied(decide(request(), facts(c)), "no-consent")


@pytest.mark.parametrize(
    "status", ["draft", "proposed", "rejected", "inactive", "entered-in-error"]
)
def test_deny_that_is_not_active_does_not_deny(status):
    permit = consent("c1", PERMIT_B)
    revoked_objection = consent("c2", provision("deny"), status=status, policy_rule="OPTOUT")
    assert_permitted(decide(request(), facts(permit, revoked_objection)), "consent")


def test_revoking_the_only_permitting_consent_denies_the_next_request():
    active = consent("c1", PERMIT_B)
    assert decide(request(), facts(active)).permit
    revoked = consent("c1", PERMIT_B, status="inactive")
    assert not decide(request(at=T0 + timedelta(seconds=1)), facts(revoked)).permit


# -- push (directed referral) -----------------------------------------------------------------


def test_push_needs_no_explicit_permit():
    d = decide(request(action="push"), facts())
    assert_permitted(d, "no-objection")
    assert d.basis.kind == "referral"


def test_push_is_blocked_by_an_objection():
    objection = consent("c1", provision("deny", to=[HOSPITAL_B]), policy_rule="OPTOUT")
    assert_denied(decide(request(action="push"), facts(objection)), "consent-deny:c1")


def test_push_still_needs_the_agreement():
    assert_denied(decide(request(action="push"), facts(agreements=())), "no-agreement")


def test_objection_to_access_only_does_not_block_a_push():
    read_only = consent("c1", provision("deny", actions=["access"]), policy_rule="OPTOUT")
    assert decide(request(action="push"), facts(read_only)).permit
    assert not decide(request(action="read"), facts(read_only)).permit


def test_objection_to_collection_blocks_a_push_but_not_a_read():
    c = consent("c1", provision("permit", children=[provision("deny", actions=["collect"])]))
    assert not decide(request(action="push"), facts(c)).permit
    assert decide(request(action="read"), facts(c)).permit


# -- emergency (break-the-glass) --------------------------------------------------------------


def emergency(**kw) -> Emergency:
    base = {
        "actor_id": "practitioner-1",
        "actor_org": HOSPITAL_B,
        "patient": PATIENT,
        "reason": "Patient unconscious at the emergency department",
        "at": T0 - timedelta(hours=1),
    }
    base.update(kw)
    return Emergency.declare(**base)


def test_emergency_permits_despite_an_objection_and_is_flagged():
    objection = consent("c1", provision("deny"), policy_rule="OPTOUT")
    d = decide(request(purpose="ETREAT"), facts(objection, emergencies=[emergency()]))
    assert d.permit
    assert d.basis.kind == "emergency"
    assert d.basis.emergency_reason == "Patient unconscious at the emergency department"
    assert d.basis.overridden == "consent-deny:c1"
    assert d.obligations == {OBLIGATION_AUDIT_AS_EMERGENCY, OBLIGATION_NOTIFY_DPO}


def test_an_emergency_stands_in_for_the_consent_not_for_the_agreement():
    """ARCHITECTURE.md, rule 1: the hospitals' agreement is needed in an emergency too."""
    without = decide(request(purpose="ETREAT"), facts(agreements=(), emergencies=[emergency()]))
    assert_denied(without, "no-agreement")
    assert without.obligations == frozenset()


def test_emergency_is_not_used_when_consent_already_permits():
    d = decide(request(purpose="ETREAT"), facts(consent("c1", PERMIT_B), emergencies=[emergency()]))
    assert_permitted(d, "consent")
    assert d.obligations == frozenset()


def test_emergency_requires_the_emergency_treatment_purpose():
    assert_denied(decide(request(purpose="TREAT"), facts(emergencies=[emergency()])), "no-consent")


def test_emergency_of_another_clinician_does_not_apply():
    other = emergency(actor_id="practitioner-2")
    assert not decide(request(purpose="ETREAT"), facts(emergencies=[other])).permit


def test_emergency_for_another_patient_does_not_apply():
    other = emergency(patient=OTHER_PATIENT)
    assert not decide(request(purpose="ETREAT"), facts(emergencies=[other])).permit


def test_emergency_past_its_window_does_not_apply():
    old = emergency(at=T0 - timedelta(hours=4, seconds=1))
    assert not decide(request(purpose="ETREAT"), facts(emergencies=[old])).permit


def test_emergency_does_not_cover_a_push():
    objection = consent("c1", provision("deny"), policy_rule="OPTOUT")
    d = decide(
        request(purpose="ETREAT", action="push"), facts(objection, emergencies=[emergency()])
    )
    assert not d.permit


# -- explanation ------------------------------------------------------------------------------


def test_explanations_name_the_basis():
    permitted = decide(request(), facts(consent("c1", PERMIT_B)))
    assert permitted.explain() == (
        "Permitted for practitioner-1 of organisation 00000002 to read problems of the patient "
        "held by 00000001 for purpose TREAT: agreement a1 covers it and the patient's consent c1 "
        "permits it."
    )
    denied = decide(
        request("MedicationRequest"), facts(consent("c1", provision("deny")), policy=None)
    )
    assert denied.explain().startswith("Denied for practitioner-1 of organisation 00000002")
    assert "consent c1 forbids it (Consent.provision)" in denied.explain()
    assert "have no agreement" in decide(request(), facts(agreements=())).explain()
    emergency_text = decide(request(purpose="ETREAT"), facts(emergencies=[emergency()])).explain()
    assert "break-the-glass" in emergency_text
    assert "Patient unconscious" in emergency_text
    assert "recorded no consent" in emergency_text


@pytest.mark.parametrize(
    "decision_facts, rule",
    [
        (facts(agreements=()), "no-agreement"),
        (facts(agreements=[agreement(purposes=["HRESCH"])]), "agreement-not-covering"),
        (facts(agreements=[agreement(status="ended")]), "agreement-expired"),
        (facts(agreements=[agreement(valid_from=date(2030, 1, 1))]), "agreement-not-yet-valid"),
        (facts(), "no-consent"),
        (facts(consent("c1", provision("permit", to=[PRACTICE_C]))), "default-deny"),
        (facts(consent("c9", provision("deny"))), "consent-deny:c9"),
        (facts(consent("c1", provision("permit", period=(None, "2025-01-01")))), "consent-expired"),
    ],
)
def test_every_deny_rule_has_a_readable_explanation(decision_facts, rule):
    d = decide(request(), decision_facts)
    assert d.basis.rule == rule
    text = d.explain()
    assert text.startswith("Denied for ") and text.endswith(".")
    assert rule not in text or rule.startswith("consent-deny")
    dutch = d.explain("nl")
    assert dutch.startswith("Geweigerd voor ") and dutch.endswith(".")
    assert rule not in dutch or rule.startswith("consent-deny")


def test_explanations_in_dutch_for_the_dpo_screens():
    permitted = decide(request(), facts(consent("c1", PERMIT_B)))
    assert permitted.explain("nl") == (
        "Toegestaan voor practitioner-1 van organisatie 00000002 om problemen van de patiënt, in "
        "beheer bij 00000001 in te zien, met doel TREAT: overeenkomst a1 dekt dit en toestemming "
        "c1 van de patiënt staat het toe."
    )
    emergency_text = decide(request(purpose="ETREAT"), facts(emergencies=[emergency()])).explain(
        "nl"
    )
    assert "noodtoegang (break-the-glass)" in emergency_text
    assert "geen toestemming vastgelegd" in emergency_text


def test_every_data_category_has_a_dutch_name():
    for code, category in DATA_CATEGORIES.items():
        assert category_title(code, "en") == category.title
        assert category_title(code, "nl") not in ("", category.title)
