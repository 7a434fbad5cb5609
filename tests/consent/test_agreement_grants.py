"""agreement_grants: the rows the gateway filters on agree with agreement_covers, always."""

from __future__ import annotations

from datetime import date

from consent_strategies import AGREEMENT_DOCUMENT, agreement_sets, requests
from hypothesis import given, settings

from consent import Agreement, agreement_covers, agreement_grants


@settings(max_examples=500, deadline=None, database=None)
@given(
    agreement_sets(),
    requests(other_organisation=True),  # own data needs no agreement: decide and SQL skip it
)
def test_rows_match_exactly_when_an_agreement_covers_the_request(found, request):
    rows = agreement_grants(found)
    covered = agreement_covers(request, found) is not None
    assert covered == any(row.matches(request) for row in rows)


def test_a_two_party_agreement_gives_rows_both_ways_for_each_category_and_purpose():
    agreement = Agreement(
        id="a1",
        kind="processor",
        parties=frozenset({"90000001", "90000002"}),
        purposes=frozenset({"TREAT"}),
        categories=frozenset({"results", "GGC013"}),
        valid_from=date(2025, 1, 1),
        document=AGREEMENT_DOCUMENT,
    )
    rows = agreement_grants([agreement], purposes=["TREAT"])
    assert {(r.holder_org, r.grantee_org, r.category) for r in rows} == {
        ("90000001", "90000002", "medication"),
        ("90000001", "90000002", "results"),
        ("90000002", "90000001", "medication"),
        ("90000002", "90000001", "results"),
    }
    assert all(r.valid_to is None and r.purpose == "TREAT" for r in rows)


def test_an_ended_agreement_gives_no_rows():
    ended = Agreement(
        id="a2",
        kind="data-sharing",
        parties=frozenset({"90000001", "90000002"}),
        purposes=frozenset({"TREAT"}),
        categories=frozenset({"treatment"}),
        valid_from=date(2025, 1, 1),
        status="ended",
        document=AGREEMENT_DOCUMENT,
    )
    assert agreement_grants([ended]) == []
