"""HL7 v2 messages → FHIR: every shared sample, the fuzzer's bad inputs, and mapped values."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from adapters import (
    BSN_SYSTEM,
    AdapterError,
    MalformedInput,
    SourceInfo,
    UnsupportedInput,
    convert,
)
from tests.adapters.adapters_testkit import (
    BAD_INPUTS,
    FIXTURES,
    HL7V2_SAMPLES,
    TEST_BSN,
    by_code,
    hl7,
    only,
    time_limit,
)

UCUM = "http://unitsofmeasure.org"
MAPPED = {"ADT^A01", "ADT^A03", "ADT^A04", "ADT^A05", "ADT^A08", "ADT^A28", "ADT^A31", "ADT^A40",
          "ORU^R01", "MDM^T02", "MDM^T06", "MDM^T10"}  # fmt: skip
SAMPLES = sorted(p.name for p in HL7V2_SAMPLES.glob("*.hl7"))
BAD = sorted(p for p in BAD_INPUTS.rglob("*") if p.is_file())


def nl(name: str) -> bytes:
    return (FIXTURES / "hl7v2" / name).read_bytes().replace(b"\n", b"\r")


def message_type(data: bytes) -> str:
    msh = data.split(b"\r", 1)[0].decode("utf-8-sig")
    code = msh.split("|")[8].split("^")
    return f"{code[0]}^{code[1]}"


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_converts_to_valid_fhir_or_is_an_unsupported_message_type(
    name: str, source: SourceInfo
) -> None:
    data = hl7(name)
    kind = message_type(data)
    if kind not in MAPPED:
        with pytest.raises(UnsupportedInput, match=re.escape(f"unsupported message type {kind}")):
            convert("hl7v2", data, source)
        return
    conversion = convert("hl7v2", data, source)  # validates every resource against R4B
    assert conversion.validated
    assert conversion.resource_counts()["Patient"] >= 1
    for entry in conversion.bundle["entry"]:
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"]["method"] in ("POST", "PUT")


def test_the_samples_cover_both_mapped_and_unsupported_types() -> None:
    kinds = {message_type(hl7(name)) for name in SAMPLES}
    assert {"ADT^A01", "ADT^A03", "ADT^A08", "ADT^A40", "ORU^R01", "MDM^T02", "MDM^T10"} <= kinds
    assert {"ORM^O01", "SIU^S12", "VXU^V04"} <= kinds


@pytest.mark.parametrize("path", BAD, ids=lambda p: f"{p.parent.name}/{p.name[:24]}")
def test_fuzzer_bad_inputs_are_rejected_cleanly_and_quickly(path, source: SourceInfo) -> None:
    with time_limit(2.0), pytest.raises(AdapterError) as caught:
        convert("hl7v2", path.read_bytes(), source)
    assert "\n" not in str(caught.value)  # one line, fit for an ACK


def test_adt_a01_maps_patient_identifiers_and_an_in_progress_encounter(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("ADT-A01-01.hl7"), source)
    assert conversion.resource_counts() == {"Patient": 1, "Encounter": 1}
    entries = {e["resource"]["resourceType"]: e for e in conversion.bundle["entry"]}
    patient = entries["Patient"]["resource"]
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.1"
    assert patient["identifier"][0]["value"] == "PATID1234"
    assert patient["birthDate"] == "1988-08-18"
    assert patient["gender"] == "male"
    assert entries["Patient"]["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.1|PATID1234"
    encounter = entries["Encounter"]["resource"]
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "PRENC"  # PV1-2 = P
    assert encounter["subject"] == {"reference": entries["Patient"]["fullUrl"]}
    assert encounter["identifier"][0]["value"] == "40007716"
    assert entries["Encounter"]["request"] == {
        "method": "POST",
        "url": "Encounter",
        "ifNoneExist": "identifier=urn:oid:1.2|40007716",
    }


def test_adt_a03_discharge_is_a_conditional_update_to_finished(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("ADT-A03-01.hl7"), source)
    entry = only([e for e in conversion.bundle["entry"]], request={
        "method": "PUT", "url": "Encounter?identifier=urn:oid:1.2|40007716"})  # fmt: skip
    assert entry["resource"]["status"] == "finished"


def test_adt_a40_merge_links_the_merged_identifier_and_warns(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("ADT-A40-01.hl7"), source)
    patient = only(conversion.resources("Patient"))
    assert patient["link"][0]["type"] == "replaces"
    assert patient["link"][0]["other"]["identifier"]["value"] == "56789"
    assert conversion.status == "warning"
    assert any("A40 merge" in issue.message for issue in conversion.issues)


def test_adt_a28_person_update_has_no_encounter(source: SourceInfo) -> None:
    assert convert("hl7v2", hl7("ADT-A28-01.hl7"), source).resource_counts() == {"Patient": 1}


def test_oru_lab_results_become_observations_of_their_reports(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("LAB-ORU-1.hl7"), source)
    assert conversion.resource_counts() == {"Patient": 1, "Observation": 10, "DiagnosticReport": 2}
    erythrocytes = by_code(conversion.resources("Observation"), "11273-0")
    assert erythrocytes["valueQuantity"] == {
        "value": 4.06,
        "unit": "tera.l-1",
        "system": UCUM,
        "code": "10*12/L",  # a lab spelling mapped to UCUM
    }
    assert erythrocytes["status"] == "preliminary"  # OBX-11 = P
    assert erythrocytes["interpretation"][0]["coding"][0]["code"] == "N"
    leukocytes = by_code(conversion.resources("Observation"), "11156-7")
    assert "valueQuantity" not in leukocytes  # no value yet (OBX-11 = I)
    assert leukocytes["status"] == "registered"
    urls = {e["resource"]["code"]["coding"][0]["code"]: e["fullUrl"] for e in conversion.bundle["entry"]
            if e["resource"]["resourceType"] == "Observation"}  # fmt: skip
    report = by_code(conversion.resources("DiagnosticReport"), "24317-0")
    assert {"reference": urls["11273-0"]} in report["result"]
    assert len(report["result"]) == 5
    assert report["status"] == "final"
    # In the second order OBR-25 sits one field too far right: reported, not guessed.
    assert by_code(conversion.resources("DiagnosticReport"), "26464-8")["status"] == "unknown"
    assert [i.location for i in conversion.issues] == ["OBR[2]-25"]


def test_oru_structured_numeric_and_underscore_reference_range(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("ORU-R01-RMGEAD.hl7"), source)
    glucose = only(conversion.resources("Observation"))
    assert glucose["valueQuantity"]["value"] == 182
    assert glucose["valueQuantity"]["code"] == "mg/dl"
    assert glucose["referenceRange"][0]["low"]["value"] == 70
    assert glucose["referenceRange"][0]["high"]["value"] == 105
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    assert only(conversion.resources("DiagnosticReport"))["status"] == "final"


def test_mdm_t02_text_document_becomes_a_binary_with_its_size_and_hash(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("MDM-T02-03.hl7"), source)
    assert conversion.resource_counts() == {"Patient": 1, "Binary": 1, "DocumentReference": 1}
    document = only(conversion.resources("DocumentReference"))
    binary_entry = next(
        e for e in conversion.bundle["entry"] if e["resource"]["resourceType"] == "Binary"
    )
    content = base64.b64decode(binary_entry["resource"]["data"])
    lines = content.decode("utf-8").splitlines()
    assert len(lines) == 29  # one line per OBX
    assert lines[0] == "Toilet cylinder crackers model step-mother visor opening communication"
    attachment = document["content"][0]["attachment"]
    assert attachment["url"] == binary_entry["fullUrl"]
    assert attachment["size"] == len(content)
    assert attachment["hash"] == base64.b64encode(hashlib.sha1(content).digest()).decode()
    assert document["type"]["coding"][0] == {"system": "http://loinc.org", "code": "18842-5",
                                             "display": "Discharge summary"}  # fmt: skip
    assert document["masterIdentifier"]["value"] == "2RWRVAJ627408"
    assert document["docStatus"] == "preliminary"  # TXA-17 = IP


def test_mdm_t10_replacement_relates_to_the_parent_document(source: SourceInfo) -> None:
    document = only(convert("hl7v2", hl7("MDM-T10-02.hl7"), source).resources("DocumentReference"))
    assert document["masterIdentifier"] == {
        "system": "urn:ietf:rfc:3986",
        "value": "urn:oid:1.2.840.317.5947431.51.20080131160038",
    }
    assert document["relatesTo"] == [
        {
            "code": "replaces",
            "target": {
                "identifier": {
                    "system": "urn:ietf:rfc:3986",
                    "value": "urn:oid:1.2.840.317.5947431.51.20080131155715",
                }
            },
        }
    ]
    assert document["author"] == [{"display": "IvanDoctorovich"}]


def test_mdm_without_content_is_an_error_and_creates_no_document(source: SourceInfo) -> None:
    conversion = convert("hl7v2", hl7("MDM-T02-01.hl7"), source)
    assert not conversion.ok
    assert "DocumentReference" not in conversion.resource_counts()
    assert any(
        "no document content" in i.message for i in conversion.issues if i.severity == "error"
    )


def test_dutch_adt_a01_carries_the_bsn_and_dutch_name_parts(source: SourceInfo) -> None:
    conversion = convert("hl7v2", nl("nl-adt-a01-bsn.hl7"), source)
    assert conversion.ok and not conversion.issues
    entries = {e["resource"]["resourceType"]: e for e in conversion.bundle["entry"]}
    patient = entries["Patient"]["resource"]
    assert patient["identifier"][0] == {"use": "official", "system": BSN_SYSTEM, "value": TEST_BSN}
    assert entries["Patient"]["request"]["ifNoneExist"] == f"identifier={BSN_SYSTEM}|{TEST_BSN}"
    name = patient["name"][0]
    assert name["family"] == "van der Berg-de Vries"
    parts = {e["url"].rsplit("-", 2)[-2] + "-" + e["url"].rsplit("-", 1)[-1]: e["valueString"]
             for e in name["_family"]["extension"]}  # fmt: skip
    assert parts == {
        "own-prefix": "van der",
        "own-name": "Berg",
        "partner-prefix": "de",
        "partner-name": "Vries",
    }
    address = patient["address"][0]
    assert address["postalCode"] == "3511AB" and address["line"] == ["Dorpsstraat 12"]
    assert {e["valueString"] for e in address["_line"][0]["extension"]} == {"Dorpsstraat", "12"}
    attending = entries["Encounter"]["resource"]["participant"][0]["individual"]
    assert attending["identifier"] == {
        "system": "http://fhir.nl/fhir/NamingSystem/agb-z",
        "value": "01234567",
    }
    assert entries["Encounter"]["resource"]["period"] == {"start": "2024-03-05T14:25:00+01:00"}


@pytest.mark.parametrize("separator", [b"\r", b"\n", b"\r\n"])
def test_segment_separators_do_not_change_the_result(separator: bytes, source: SourceInfo) -> None:
    data = nl("nl-oru-r01-bsn.hl7").replace(b"\r", separator)
    counts = convert("hl7v2", b"\xef\xbb\xbf" + data, source).resource_counts()
    assert counts == {"Patient": 1, "Observation": 5, "DiagnosticReport": 1}


def test_dutch_oru_values_units_ranges_and_notes(source: SourceInfo) -> None:
    conversion = convert("hl7v2", nl("nl-oru-r01-bsn.hl7"), source)
    assert conversion.ok and not conversion.issues
    observations = conversion.resources("Observation")
    cholesterol = by_code(observations, "2093-3")
    assert cholesterol["valueQuantity"] == {
        "value": 5.8,
        "unit": "mmol/L",
        "system": UCUM,
        "code": "mmol/L",
    }
    assert cholesterol["referenceRange"][0]["high"]["value"] == 5.0
    assert cholesterol["referenceRange"][0]["text"] == "<5.0"
    assert cholesterol["interpretation"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}  # fmt: skip
    assert by_code(observations, "14927-8")["valueQuantity"]["comparator"] == "<"
    comment = by_code(observations, "8251-1")
    assert comment["valueString"] == "Nuchter afgenomen & direct verwerkt"
    assert comment["note"] == [{"text": "Monster licht hemolytisch;\nuitslag onder voorbehoud."}]
    assert (
        by_code(observations, "5778-6")["valueCodeableConcept"]["coding"][0]["system"]
        == "http://snomed.info/sct"
    )
    report = only(conversion.resources("DiagnosticReport"))
    assert report["issued"] == "2024-03-06T09:10:00+01:00"
    assert report["identifier"][0]["value"] == "LAB-2024-000555"
    assert len(report["result"]) == 5
    report_entry = next(e for e in conversion.bundle["entry"] if e["resource"] is report)
    assert report_entry["request"]["method"] == "PUT"  # a later final/corrected result replaces it
    assert report_entry["request"]["url"].startswith("DiagnosticReport?identifier=")


def test_a_bsn_failing_the_elfproef_is_an_error_and_not_used(source: SourceInfo) -> None:
    conversion = convert(
        "hl7v2", nl("nl-oru-r01-bsn.hl7").replace(b"999911120", b"999911121"), source
    )
    assert not conversion.ok
    assert [(i.location, i.severity) for i in conversion.issues] == [("PID-3[1].1", "error")]
    patient_entry = conversion.bundle["entry"][0]
    assert BSN_SYSTEM not in str(patient_entry)
    assert "7654321" in patient_entry["request"]["ifNoneExist"]  # the hospital number instead


def test_a_bsn_named_by_its_oid_is_recognised(source: SourceInfo) -> None:
    data = nl("nl-adt-a01-bsn.hl7").replace(
        b"999911120^^^NLMINBIZA^NNNLD", b"999911120^^^&2.16.840.1.113883.2.4.6.3&ISO"
    )
    patient = only(convert("hl7v2", data, source).resources("Patient"))
    assert patient["identifier"][0] == {"use": "official", "system": BSN_SYSTEM, "value": TEST_BSN}


def test_unsupported_versions_and_events_carry_their_hl7_error_codes(source: SourceInfo) -> None:
    with pytest.raises(UnsupportedInput) as version:
        convert("hl7v2", nl("nl-adt-a01-bsn.hl7").replace(b"|P|2.5|", b"|P|2.2|"), source)
    assert (version.value.location, version.value.hl7_error_code) == ("MSH-12", "203")
    with pytest.raises(UnsupportedInput) as event:
        convert("hl7v2", hl7("ADT-A02-01.hl7"), source)
    assert event.value.hl7_error_code == "201"
    with pytest.raises(MalformedInput) as missing:
        convert("hl7v2", nl("nl-adt-a01-bsn.hl7").replace(b"ADT^A01^ADT_A01", b""), source)
    assert missing.value.location == "MSH-9"


PDF = (FIXTURES / "pdf" / "discharge-summary-ud-sample.pdf").read_bytes()


def _embedded_pdf(kind: bytes, segments: bytes) -> bytes:
    head = nl("nl-oru-r01-bsn.hl7").split(b"\rOBX", 1)[0]
    if kind == b"MDM":
        head = head.replace(b"ORU^R01^ORU_R01", b"MDM^T02^MDM_T02").split(b"\rORC", 1)[0]
        head += b"\rTXA|1|DS|AP|20240306090000+0100||20240306085500+0100||||||2.16.840.1.113883.2.4.3.11.999.2.77|||||AU||AV"
    return head + b"\r" + segments + b"\r"


def _base64_lines(data: bytes) -> list[bytes]:
    encoded = base64.encodebytes(data)  # 76-character lines, as mail-style encoders produce
    return encoded.rstrip(b"\n").split(b"\n")


def test_oru_embedded_pdf_split_over_add_segments_becomes_the_presented_form(
    source: SourceInfo,
) -> None:
    lines = _base64_lines(PDF)
    first, rest = b"\\X0D0A\\".join(lines[:100]), b"\\.br\\".join(lines[100:])
    obx = (
        b"OBX|1|ED|11526-1^Pathology study^LN||^application^pdf^Base64^"
        + first
        + b"\rADD|"
        + rest
        + b"||||||F"
    )
    conversion = convert("hl7v2", _embedded_pdf(b"ORU", obx), source)
    assert conversion.issues == []
    report = only(conversion.resources("DiagnosticReport"))
    presented = report["presentedForm"][0]
    assert presented["contentType"] == "application/pdf"
    assert base64.b64decode(presented["data"]) == PDF
    assert "Observation" not in conversion.resource_counts()


def test_mdm_embedded_pdf_is_stored_byte_identical(source: SourceInfo) -> None:
    data = base64.b64encode(PDF)
    halves = data[: len(data) // 2], data[len(data) // 2 :]
    obx = (
        b"OBX|1|ED|18842-5^Discharge summary^LN||^AP^PDF^Base64^"
        + halves[0]
        + b"~"
        + halves[1]
        + b"||||||F"
    )
    conversion = convert("hl7v2", _embedded_pdf(b"MDM", obx), source)
    assert conversion.issues == []
    binary = only(conversion.resources("Binary"))
    assert binary["contentType"] == "application/pdf"
    assert base64.b64decode(binary["data"]) == PDF
    document = only(conversion.resources("DocumentReference"))
    assert document["content"][0]["attachment"]["size"] == len(PDF)
    assert document["masterIdentifier"]["value"] == "urn:oid:2.16.840.1.113883.2.4.3.11.999.2.77"
    assert document["status"] == "current" and document["docStatus"] == "final"


def test_converting_twice_gives_the_same_conditions_and_new_full_urls(source: SourceInfo) -> None:
    first = convert("hl7v2", nl("nl-oru-r01-bsn.hl7"), source).bundle["entry"]
    second = convert("hl7v2", nl("nl-oru-r01-bsn.hl7"), source).bundle["entry"]
    assert [e["request"] for e in first] == [e["request"] for e in second]
    assert {e["fullUrl"] for e in first}.isdisjoint(e["fullUrl"] for e in second)


def test_validation_can_be_switched_off_for_throughput(source: SourceInfo) -> None:
    fast = convert("hl7v2", nl("nl-oru-r01-bsn.hl7"), source, validate=False)
    assert not fast.validated
    assert fast.resource_counts() == {"Patient": 1, "Observation": 5, "DiagnosticReport": 1}


def test_an_oru_with_two_patients_keeps_each_report_with_its_own_patient(
    source: SourceInfo,
) -> None:
    message = nl("nl-oru-r01-bsn.hl7")
    msh, rest = message.split(b"\r", 1)
    second = rest.replace(
        b"999911120^^^NLMINBIZA^NNNLD~7654321", b"999911144^^^NLMINBIZA^NNNLD~7654322"
    )
    second = second.replace(b"LAB-2024-000555", b"LAB-2024-000556")
    conversion = convert("hl7v2", msh + b"\r" + rest + second, source)
    assert conversion.resource_counts() == {"Patient": 2, "Observation": 10, "DiagnosticReport": 2}
    patients = {e["resource"]["identifier"][0]["value"]: e["fullUrl"] for e in conversion.bundle["entry"]
                if e["resource"]["resourceType"] == "Patient"}  # fmt: skip
    for report in conversion.resources("DiagnosticReport"):
        bsn = TEST_BSN if report["identifier"][0]["value"].endswith("555") else "999911144"
        assert report["subject"] == {"reference": patients[bsn]}
