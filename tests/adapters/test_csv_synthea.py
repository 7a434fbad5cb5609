"""CSV extracts through mapping profiles: the Synthea profile on a synthetic export, bad rows,
ZIP and single-file input, older column sets, and profile errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from adapters import (
    BSN_SYSTEM,
    MalformedInput,
    ProfileError,
    SourceInfo,
    UnsafeInput,
    convert,
    convert_csv_directory,
    convert_csv_files,
)
from adapters.csv.profile import parse_profile
from tests.adapters.adapters_testkit import FIXTURES, TEST_BSN, URA, by_code, only

EXPORT = FIXTURES / "synthea"
SYNTHEA = "https://github.com/synthetichealth/synthea"
ANNA = "b1f6c1a2-0d4e-4c59-9d7a-1f2e3d4c5b01"


@pytest.fixture
def synthea() -> SourceInfo:
    return SourceInfo(organization=URA, profile="synthea")


def files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in EXPORT.glob("*.csv")}


def test_a_synthea_export_converts_with_every_good_row(synthea: SourceInfo) -> None:
    conversion = convert_csv_directory(EXPORT, synthea)
    assert conversion.validated
    assert conversion.resource_counts() == {
        "Patient": 3, "Encounter": 3, "Condition": 3, "Observation": 7, "MedicationStatement": 2,
        "AllergyIntolerance": 2, "Procedure": 2, "Immunization": 1,
    }  # fmt: skip


def test_bad_rows_are_errors_naming_file_and_line(synthea: SourceInfo) -> None:
    conversion = convert_csv_directory(EXPORT, synthea)
    assert not conversion.ok
    errors = {
        (i.location, i.message.split(";")[0]) for i in conversion.issues if i.severity == "error"
    }
    assert errors == {
        ("conditions.csv line 5", "5 values where the header has 6"),
        ("observations.csv line 8", "value 'abc' is not a number although its type says numeric"),
        (
            "observations.csv line 9",
            "patient 'b1f6c1a2-0d4e-4c59-9d7a-1f2e3d4c5b99' is not a row of the Patient table",
        ),
        ("observations.csv line 10", "CODE (code) is empty"),
        ("medications.csv line 4", "patient is empty"),
    }


def test_patients_rows_map_names_identifiers_and_address(synthea: SourceInfo) -> None:
    conversion = convert_csv_directory(EXPORT, synthea)
    anna = next(p for p in conversion.resources("Patient") if p["identifier"][0]["value"] == ANNA)
    assert anna["identifier"][0]["system"] == SYNTHEA
    assert {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-12-3456"} in anna[
        "identifier"
    ]
    assert anna["name"][0] == {
        "use": "official",
        "family": "Kessler456",
        "given": ["Anna123"],
        "prefix": ["Mrs."],
    }
    assert anna["name"][1] == {"use": "maiden", "family": "Marsh789"}
    assert anna["gender"] == "female" and anna["birthDate"] == "1961-04-12"
    assert anna["address"][0]["postalCode"] == "01002"
    henry = next(p for p in conversion.resources("Patient") if p["birthDate"] == "1938-01-05")
    assert henry["deceasedDateTime"] == "2021-11-02"
    assert henry["address"][0]["line"] == ["12 Harbor Lane, Apt 2"]  # a quoted comma


def test_observation_values_follow_the_type_column(synthea: SourceInfo) -> None:
    observations = convert_csv_directory(EXPORT, synthea).resources("Observation")
    height = by_code(observations, "8302-2")
    assert height["valueQuantity"] == {
        "value": 168.2,
        "unit": "cm",
        "system": "http://unitsofmeasure.org",
        "code": "cm",
    }
    assert height["effectiveDateTime"] == "2019-02-17T10:24:41+00:00"
    assert height["category"][0]["coding"][0]["code"] == "vital-signs"
    smoking = by_code(observations, "72166-2")
    assert smoking["valueString"] == "Never smoked tobacco (finding)"
    assert by_code(observations, "8480-6")["valueQuantity"]["code"] == "mm[Hg]"


def test_rows_refer_to_their_patient_and_encounter_entries(synthea: SourceInfo) -> None:
    conversion = convert_csv_directory(EXPORT, synthea)
    urls = {e["resource"]["resourceType"] + ":" + e["resource"]["identifier"][0]["value"]: e["fullUrl"]
            for e in conversion.bundle["entry"] if e["resource"]["resourceType"] in ("Patient", "Encounter")}  # fmt: skip
    diabetes = by_code(conversion.resources("Condition"), "44054006")
    assert diabetes["subject"] == {"reference": urls[f"Patient:{ANNA}"]}
    assert diabetes["encounter"] == {
        "reference": urls["Encounter:e0c1d2e3-0000-4000-8000-000000000001"]
    }
    assert diabetes["clinicalStatus"]["coding"][0]["code"] == "active"
    pneumonia = by_code(conversion.resources("Condition"), "233604007")
    assert pneumonia["clinicalStatus"]["coding"][0]["code"] == "resolved"
    inpatient = next(e for e in conversion.resources("Encounter") if e["class"]["code"] == "IMP")
    assert inpatient["status"] == "finished"
    assert inpatient["type"][0]["coding"][0]["code"] == "32485007"
    assert inpatient["reasonCode"][0]["coding"][0]["code"] == "233604007"
    assert inpatient["period"] == {
        "start": "2020-06-03T08:00:00+00:00",
        "end": "2020-06-06T12:30:00+00:00",
    }
    emergency = next(e for e in conversion.resources("Encounter") if e["class"]["code"] == "EMER")
    assert emergency["status"] == "in-progress"  # no STOP yet


def test_allergies_get_type_category_and_reactions(synthea: SourceInfo) -> None:
    allergies = convert_csv_directory(EXPORT, synthea).resources("AllergyIntolerance")
    penicillin = by_code(allergies, "7980")
    assert (
        penicillin["code"]["coding"][0]["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    )
    assert (penicillin["type"], penicillin["category"]) == ("allergy", ["medication"])
    assert penicillin["reaction"][0]["severity"] == "moderate"
    pollen = by_code(allergies, "256277009")
    assert [r["manifestation"][0]["coding"][0]["code"] for r in pollen["reaction"]] == [
        "21626009",
        "49727002",
    ]


def test_rows_with_ids_are_conditional_creates(synthea: SourceInfo) -> None:
    conversion = convert_csv_directory(EXPORT, synthea)
    requests = [e["request"] for e in conversion.bundle["entry"]]
    assert {
        "method": "POST",
        "url": "Patient",
        "ifNoneExist": f"identifier={SYNTHEA}|{ANNA}",
    } in requests
    assert all("ifNoneExist" in r for r in requests)
    immunization = only(conversion.resources("Immunization"))
    assert immunization["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/cvx", "code": "140",
        "display": "Influenza  seasonal  injectable  preservative free",
    }  # fmt: skip


def test_a_zip_of_the_export_converts_like_the_directory(synthea: SourceInfo) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files().items():
            archive.writestr(f"output/csv/{name}", content)
        archive.writestr("output/csv/claims.csv", "Id\n1\n")
    conversion = convert("csv", buffer.getvalue(), synthea)
    assert conversion.resource_counts() == convert_csv_files(files(), synthea).resource_counts()
    assert any(
        i.location == "output/csv/claims.csv" and i.severity == "information"
        for i in conversion.issues
    )


def test_a_zip_bomb_is_refused(synthea: SourceInfo) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("patients.csv", b"Id\n" + b"0" * (129 * 1024 * 1024))
    assert len(buffer.getvalue()) < 1024 * 1024
    with pytest.raises(UnsafeInput):
        convert("csv", buffer.getvalue(), synthea)


def test_a_single_file_is_placed_by_its_name(synthea: SourceInfo) -> None:
    data = (EXPORT / "patients.csv").read_bytes()
    named = SourceInfo(organization=URA, profile="synthea", filename="patients.csv")
    assert convert("csv", data, named).resource_counts() == {"Patient": 3}
    with pytest.raises(MalformedInput, match="filename"):
        convert("csv", data, synthea)


def test_rows_referring_to_a_table_that_was_not_sent_fail_row_by_row(synthea: SourceInfo) -> None:
    conversion = convert_csv_files(
        {"observations.csv": (EXPORT / "observations.csv").read_bytes()}, synthea
    )
    assert conversion.resource_counts() == {}
    errors = [i for i in conversion.issues if i.severity == "error"]
    assert len(errors) == 10  # every data row, each with its own line
    assert errors[0].message.startswith(
        "patient 'b1f6c1a2-0d4e-4c59-9d7a-1f2e3d4c5b01': no Patient table"
    )


def test_older_synthea_column_sets_are_understood(synthea: SourceInfo) -> None:
    procedures = (
        "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,BASE_COST,REASONCODE,REASONDESCRIPTION\n"
        f"2019-02-17,{ANNA},e0c1d2e3-0000-4000-8000-000000000001,430193006,Medication Reconciliation (procedure),"
        "306.37,,\n"
    ).encode()
    observations = (
        "DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,VALUE,UNITS,TYPE\n"
        f"2019-02-17,{ANNA},e0c1d2e3-0000-4000-8000-000000000001,39156-5,Body Mass Index,28.8,kg/m2,numeric\n"
    ).encode()
    conversion = convert_csv_files(
        {"patients.csv": (EXPORT / "patients.csv").read_bytes(), "procedures.csv": procedures,
         "observations.csv": observations},
        synthea,
    )  # fmt: skip
    procedure = only(conversion.resources("Procedure"))
    assert procedure["performedDateTime"] == "2019-02-17"
    bmi = only(conversion.resources("Observation"))
    assert bmi["valueQuantity"]["code"] == "kg/m2"
    assert "category" not in bmi
    assert any("CATEGORY" in i.message for i in conversion.issues if i.severity == "information")


def test_a_hospital_profile_can_carry_the_bsn_and_local_formats() -> None:
    profile = FIXTURES / "hospital-csv" / "hospital.toml"
    rows = "PATNR;BSN;ACHTERNAAM;VOORNAAM;GEBDAT;GESLACHT\n1001;999911120;Dijkstra;Ren\u00e9e;15-03-1975;V\n1002;123456789;Bos;Jan;01-01-1960;M\n"
    source = SourceInfo(organization=URA, profile=str(profile))
    conversion = convert_csv_files({"patienten.csv": rows.encode("cp1252")}, source)
    renee = conversion.resources("Patient")[0]
    assert {"use": "official", "system": BSN_SYSTEM, "value": TEST_BSN} in renee["identifier"]
    assert renee["name"][0]["given"] == ["Ren\u00e9e"]
    assert (renee["birthDate"], renee["gender"]) == ("1975-03-15", "female")
    assert (
        conversion.bundle["entry"][0]["request"]["ifNoneExist"]
        == f"identifier={BSN_SYSTEM}|{TEST_BSN}"
    )
    # Jan's BSN fails the elfproef: his row is a bad row, left out, as the gateway refuses it.
    assert [(i.location, i.severity, i.message) for i in conversion.issues] == [
        ("patienten.csv line 3", "error", "BSN '123456789' fails the elfproef; row skipped")
    ]
    assert len(conversion.resources("Patient")) == 1
    assert renee["identifier"][0]["system"].startswith(
        f"https://zorgbrug.nl/fhir/NamingSystem/{URA}/"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tables = 1", "at least one table"),
        ('[tables.p]\nfile = "p.csv"\nresource = "Pet"\nid = "Id"', "not supported"),
        (
            '[tables.p]\nfile = "p.csv"\nresource = "Patient"\nid = "Id"\n[tables.p.fields]\nnmae = "N"',
            "unknown field",
        ),
        ('[tables.p]\nfile = "p.csv"\nresource = "Patient"', "needs one id column"),
        (
            '[tables.o]\nfile = "o.csv"\nresource = "Observation"\n[tables.o.fields]\npatient = "P"\ncode = "C"',
            "exactly one table must map to Patient",
        ),
        (
            '[tables.p]\nfile = "p.csv"\nresource = "Patient"\nid = "Id"\n[tables.p.fields]\nfamily = { colum = "X" }',
            "unknown keys",
        ),
        ("[tables", "not valid TOML"),
    ],
)
def test_profile_mistakes_are_reported_before_any_row(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        parse_profile(text, "test")


def test_the_example_profile_in_the_readme_is_valid() -> None:
    readme = (
        Path(__file__).resolve().parents[2] / "adapters" / "csv_profiles" / "README.md"
    ).read_text()
    example = (
        readme.split("## Example: a hospital extract", 1)[1]
        .split("```toml", 1)[1]
        .split("```", 1)[0]
    )
    profile = parse_profile(example, "README example")
    assert [t.resource for t in profile.tables] == ["Patient", "Observation"]
    assert profile.tables[0].identifiers[0].system == BSN_SYSTEM


def test_an_unknown_profile_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ProfileError, match="synthea"):
        convert(
            "csv", b"Id\n1\n", SourceInfo(organization=URA, profile="epic", filename="patients.csv")
        )
    with pytest.raises(ProfileError, match="needs a mapping profile"):
        convert("csv", b"Id\n1\n", SourceInfo(organization=URA, filename="patients.csv"))
