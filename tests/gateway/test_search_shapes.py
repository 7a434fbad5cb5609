"""Search statements are kept per query shape, with the query's values bound when they run."""

from __future__ import annotations

import pytest

from gateway.fhir.search import parse_search
from gateway.fhir.search_params import registry
from gateway.store.database import Database
from gateway.store.search_shapes import search_statement
from gateway.store.search_sql import ConsentScope, bound_visibility, everything_visible

LOINC = "http://loinc.org"


def query(res_type: str, *params: tuple[str, str]):
    parsed = parse_search(
        res_type,
        list(params),
        registry(),
        default_count=20,
        max_count=100,
        strict=True,
        own_base="http://gateway.test/fhir",
    )
    parsed.snapshot = 1_000
    return parsed


def statement(kind, parsed, organization="90000001", actor="client-a"):
    visible, values = bound_visibility(
        organization, "network", ConsentScope(actor, "TREAT", opt_out=False), addressed=True
    )
    return search_statement(kind, parsed, visible, values)


@pytest.mark.parametrize("kind", ["counted", "count", "page", "page, candidates first"])
def test_searches_of_one_shape_share_a_statement_and_bind_their_own_values(kind):
    first, first_values = statement(
        kind,
        query("Observation", ("code", f"{LOINC}|718-7"), ("date", "ge2020-01-01")),
        organization="90000001",
        actor="client-a",
    )
    second, second_values = statement(
        kind,
        query("Observation", ("code", f"{LOINC}|2345-7"), ("date", "ge2024-06-01")),
        organization="90000002",
        actor="client-b",
    )
    assert first is second
    assert first_values["v0"] == "718-7" and second_values["v0"] == "2345-7"
    assert first_values["v1"] < second_values["v1"]  # the dates' lower bounds
    assert (first_values["org"], second_values["org"]) == ("90000001", "90000002")
    assert (first_values["actor"], second_values["actor"]) == ("client-a", "client-b")


def test_a_string_value_binds_where_its_prefix_and_substring_matches_end():
    _, values = statement("counted", query("Patient", ("family", "Jan")))
    assert values["v0"] == "jan" and values["v0_end"] == "jan\U0010ffff"
    _, values = statement("counted", query("Patient", ("family:contains", "a_b")))
    assert values["v0_pattern"] == "%a\\_b%"


@pytest.mark.parametrize(
    "other",
    [
        [("code", "718-7")],  # any system
        [("code", f"{LOINC}|718-7"), ("code", f"{LOINC}|2345-7")],  # two criteria
        [("code", f"{LOINC}|718-7,{LOINC}|2345-7")],  # two values
        [("code:not", f"{LOINC}|718-7")],
        [("code", "http://snomed.info/sct|718-7")],  # another system
        [("code", f"{LOINC}|718-7"), ("_sort", "date")],
    ],
)
def test_another_shape_gets_a_statement_of_its_own(other):
    known, _ = statement("counted", query("Observation", ("code", f"{LOINC}|718-7")))
    different, _ = statement("counted", query("Observation", *other))
    assert different is not known


def test_the_console_sees_everything_with_no_values_to_bind():
    parsed = query("Patient", ("family", "Jan"))
    console, values = search_statement("counted", parsed, everything_visible, {})
    own, _ = statement("counted", parsed)
    assert console is not own and set(values) >= {"v0", "snapshot", "page_count"}
    assert "org" not in values


def test_a_count_on_sqlite_judges_others_matches_from_the_consent_facts_index(tmp_path):
    """Counting judges consent for every other organisation's match of the driving index: on
    SQLite from the narrow index of consent facts, not from the whole resource row."""
    db = Database(f"sqlite:///{tmp_path / 'plans.db'}", threads=1)
    try:
        db.migrate_now()
        sql, values = statement("counted", query("Observation", ("code", f"{LOINC}|718-7")))
        compiled = sql.compile(dialect=db.engine.dialect)
        bound = compiled.construct_params(values)
        args = tuple(bound[name] for name in compiled.positiontup or ())
        with db.engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args)]
        judged = [step for step in plan if "current_row" in step]
        assert len(judged) == 1
        assert judged[0].startswith(
            "SEARCH current_row USING COVERING INDEX ix_resources_consent_facts (rid=?"
        )
    finally:
        db.engine.dispose()
