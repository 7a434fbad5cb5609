"""``zorgbrug import``: EHR export files converted by the adapters and stored through the
service layer, one JSON line per file; re-imports store nothing twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import FHIR_EXAMPLES, SHARED_DATA, unique_bsn

FIXTURES = Path(__file__).resolve().parents[2] / "adapters" / "fixtures"
HL7 = SHARED_DATA / "hl7v2" / "microsoft-fhir-converter"
BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
EMBEDDED = SHARED_DATA / "c-cda" / "unstructured" / "CDA_with_Embedded_PDF_1"
ORG, PARTNER = "90000701", "90000702"


@pytest.fixture(scope="module")
def hospitals(server):
    holder = server.hospital(ORG, "Importerend Ziekenhuis")
    partner = server.hospital(PARTNER, "Ontvangend Ziekenhuis")
    server.agreement(ORG, PARTNER)
    return holder, partner


def zorgbrug_import(server, *args):
    """Run ``zorgbrug import``; the reports (one per file) and the exit status."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "import",
            *args,
            "--data-dir",
            str(server.settings.data_dir),
            "--database-url",
            server.settings.database_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return reports, done.returncode, done.stderr


def test_hl7v2_messages_are_stored_and_a_reimport_adds_nothing(server, hospitals):
    files = [
        str(FIXTURES / "hl7v2" / "nl-adt-a01-bsn.hl7"),
        str(FIXTURES / "hl7v2" / "nl-oru-r01-bsn.hl7"),
    ]
    reports, status, stderr = zorgbrug_import(server, "--adapter", "hl7v2", "--org", ORG, *files)
    assert status == 0, (reports, stderr)
    assert [r["status"] for r in reports] == ["imported", "imported"]
    with server.client(hospitals[0]) as fhir:
        results = fhir.get(
            "/Observation",
            params={"patient.identifier": f"{BSN}|999911120", "code": "http://loinc.org|2093-3"},
        ).json()
        assert results["total"] == 1
        cholesterol = results["entry"][0]["resource"]
        assert cholesterol["valueQuantity"]["value"] == 5.8
        assert cholesterol["valueQuantity"]["code"] == "mmol/L"
        before = fhir.get("/Observation", params={"_summary": "count"}).json()["total"]
    again, status, _ = zorgbrug_import(server, "--adapter", "hl7v2", "--org", ORG, *files)
    assert status == 0 and all(r["resources"] == 0 for r in again), again
    with server.client(hospitals[0]) as fhir:
        assert fhir.get("/Observation", params={"_summary": "count"}).json()["total"] == before


def test_an_unsupported_message_is_rejected_and_the_others_still_imported(server, hospitals):
    reports, status, _ = zorgbrug_import(
        server,
        "--adapter",
        "hl7v2",
        "--org",
        ORG,
        str(HL7 / "SIU-S12-01.hl7"),
        str(FIXTURES / "hl7v2" / "nl-adt-a01-bsn.hl7"),
    )
    assert status == 1
    assert reports[0]["status"] == "rejected"
    assert "unsupported" in reports[0]["issues"][0]["message"]
    assert reports[1]["status"] == "imported"


def test_a_message_with_an_invalid_bsn_is_rejected_whole(server, hospitals, tmp_path):
    text = (FIXTURES / "hl7v2" / "nl-adt-a01-bsn.hl7").read_text()
    bad = tmp_path / "adt-invalid-bsn.hl7"
    bad.write_text(text.replace("999911120", "999930001").replace("ADT000123", "ADT-ELF"))
    with server.client(hospitals[0]) as fhir:
        before = fhir.get("/Patient", params={"_summary": "count"}).json()["total"]
    reports, status, _ = zorgbrug_import(server, "--adapter", "hl7v2", "--org", ORG, str(bad))
    assert status == 1
    [report] = reports
    assert (report["status"], report["resources"]) == ("rejected", 0)
    assert any("fails the elfproef" in i["message"] for i in report["issues"]), report
    with server.client(hospitals[0]) as fhir:
        found = fhir.get("/Patient", params={"identifier": f"{BSN}|999930001"}).json()
        assert found["total"] == 0
        assert fhir.get("/Patient", params={"_summary": "count"}).json()["total"] == before


def test_an_entry_the_gateway_refuses_is_named_by_its_line_in_the_extract(
    server, hospitals, tmp_path
):
    good, twice = unique_bsn(), unique_bsn()
    with server.client(hospitals[0]) as fhir:
        for _ in range(2):  # two records of one BSN: a create conditional on it cannot choose
            patient = {"resourceType": "Patient", "identifier": [{"system": BSN, "value": twice}]}
            assert fhir.post("/Patient", json=patient).status_code == 201
    profile = FIXTURES / "hospital-csv" / "hospital.toml"
    extract = tmp_path / "extract"
    extract.mkdir()
    header = "PATNR;BSN;ACHTERNAAM;VOORNAAM;GEBDAT;GESLACHT"
    rows = f"{header}\n2001;{good};Goed;Jan;01-01-1960;M\n2002;{twice};Dubbel;Ria;02-02-1962;V\n"
    (extract / "patienten.csv").write_text(rows, encoding="utf-8")
    reports, status, _ = zorgbrug_import(
        server, "--adapter", "csv", "--profile", str(profile), "--org", ORG, str(extract)
    )
    assert status == 1
    [report] = reports
    assert report["status"] == "rejected"
    refusals = [i["message"] for i in report["issues"] if i["location"] == "gateway"]
    assert refusals[0].startswith("patienten.csv line 3: Bundle.entry[1]: "), refusals
    assert "more than one" in refusals[0]


def test_a_synthea_export_reports_bad_rows_by_line_and_stores_the_good_ones(server, hospitals):
    reports, status, _ = zorgbrug_import(
        server, "--adapter", "csv", "--profile", "synthea", "--org", ORG, str(FIXTURES / "synthea")
    )
    assert status == 0
    [report] = reports
    assert report["status"] == "imported" and report["resources"] > 10
    lines = [i["location"] for i in report["issues"] if i["severity"] == "error"]
    assert lines and all(" line " in location for location in lines)


def test_a_pdf_addressed_to_a_partner_reaches_its_inbox(server, hospitals):
    pdf = FIXTURES / "pdf" / "discharge-summary-ud-sample.pdf"
    reports, status, stderr = zorgbrug_import(
        server,
        "--adapter",
        "pdf",
        "--org",
        ORG,
        "--to",
        PARTNER,
        "--patient",
        "999911120",
        "--type",
        "18842-5",
        "--title",
        "Ontslagbrief",
        str(pdf),
    )
    assert status == 0, (reports, stderr)
    with server.client(hospitals[1]) as fhir:
        found = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": f"{BSN}|999911120", "type": "http://loinc.org|18842-5"},
        ).json()
        assert found["total"] >= 1
        url = found["entry"][0]["resource"]["content"][0]["attachment"]["url"]
        assert (
            fhir.get(f"/{url}", headers={"Accept": "application/pdf"}).content == pdf.read_bytes()
        )
        inbox = fhir.get(
            "/Task", params={"code": "http://fhir.nl/fhir/NamingSystem/TaskCode|pull-notification"}
        )
        assert inbox.json()["total"] >= 1


def test_a_cda_with_an_embedded_pdf_keeps_both_byte_identical(server, hospitals):
    source = EMBEDDED / "Unstructured_Document_embed.xml"
    reports, status, stderr = zorgbrug_import(server, "--adapter", "cda", "--org", ORG, str(source))
    assert status == 0, (reports, stderr)
    with server.client(hospitals[0]) as fhir:
        documents = fhir.get("/DocumentReference", params={"_count": "200"}).json()["entry"]
        contents = set()
        for entry in documents:
            for content in entry["resource"]["content"]:
                attachment = content["attachment"]
                contents.add(fhir.get(f"/{attachment['url']}", headers={"Accept": "*/*"}).content)
    assert (EMBEDDED / "C-CDA_R2_UD_sample.pdf").read_bytes() in contents


def test_fhir_exports_including_dutch_nl_core_xml_are_imported(server, hospitals):
    examples = sorted((SHARED_DATA / "nl-nictiz-zib2020" / "examples").glob("*.xml"))[:5]
    reports, status, _stderr = zorgbrug_import(
        server,
        "--adapter",
        "fhir",
        "--org",
        ORG,
        str(FHIR_EXAMPLES / "Bundle" / "Bundle-bundle-transaction.json"),
        *map(str, examples),
    )
    assert [r["status"] for r in reports[1:]] == ["imported"] * len(examples), reports
    assert status in (0, 1)


def test_usage_mistakes_exit_2(server):
    _, status, stderr = zorgbrug_import(server, "--adapter", "nope", "--org", ORG, "x")
    assert status == 2 and "invalid choice" in stderr
