"""CDA / C-CDA documents → FHIR: every sample, entry counts and values, PDFs, hostile XML."""

from __future__ import annotations

import base64
import re

import pytest

from adapters import BSN_SYSTEM, MalformedInput, SourceInfo, UnsafeInput, UnsupportedInput, convert
from tests.adapters.adapters_testkit import CCDA, TEST_BSN, URA, by_code, only

DOCUMENTS = sorted(
    [p for p in (CCDA / "documents").rglob("*") if p.suffix.lower() == ".xml"]
    + list((CCDA / "microsoft-fhir-converter").glob("*.ccda"))
    + list((CCDA / "unstructured").rglob("*.xml"))
)
SNIPPETS = sorted((CCDA / "snippets").glob("*.xml"))
CCD = CCDA / "documents" / "CCD" / "CCD_1" / "CCD.XML"
DISCHARGE = CCDA / "documents" / "Discharge_Summary" / "Discharge_Summary.xml"
REFERRAL = CCDA / "documents" / "Referral_Note" / "Referral_Note.xml"
EMBEDDED = CCDA / "unstructured" / "CDA_with_Embedded_PDF_1" / "Unstructured_Document_embed.xml"
REFERENCED = CCDA / "unstructured" / "CDA_reference_PDF" / "Unstructured_Document_reference.xml"
UCUM = "http://unitsofmeasure.org"


def binaries(conversion) -> dict[str, bytes]:
    """fullUrl → decoded bytes of every Binary in the Bundle."""
    return {
        e["fullUrl"]: base64.b64decode(e["resource"]["data"])
        for e in conversion.bundle["entry"]
        if e["resource"]["resourceType"] == "Binary"
    }


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_every_sample_document_converts_and_keeps_the_original_xml(
    path, source: SourceInfo
) -> None:
    data = path.read_bytes()
    conversion = convert("cda", data, source)  # validates every resource against R4B
    assert conversion.validated and conversion.ok
    counts = conversion.resource_counts()
    assert counts["Patient"] == 1 and counts["DocumentReference"] == 1
    document = only(conversion.resources("DocumentReference"))
    xml = document["content"][0]["attachment"]
    assert xml["contentType"] == "text/xml"
    assert binaries(conversion)[xml["url"]] == data
    assert document["subject"]["reference"] == conversion.bundle["entry"][0]["fullUrl"]


def test_ccd_entries_and_values(source: SourceInfo) -> None:
    conversion = convert("cda", CCD.read_bytes(), source)
    assert conversion.resource_counts() == {
        "Patient": 1, "AllergyIntolerance": 2, "MedicationStatement": 2, "Condition": 4,
        "Procedure": 3, "Observation": 14, "Binary": 1, "DocumentReference": 1,
    }  # fmt: skip
    hemoglobin = by_code(conversion.resources("Observation"), "718-7")
    assert hemoglobin["valueQuantity"] == {
        "value": 13.2,
        "unit": "g/dL",
        "system": UCUM,
        "code": "g/dL",
    }
    assert hemoglobin["referenceRange"][0]["low"]["value"] == 12.0
    assert hemoglobin["category"][0]["coding"][0]["code"] == "laboratory"
    penicillin = by_code(conversion.resources("AllergyIntolerance"), "70618")
    assert (
        penicillin["code"]["coding"][0]["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm"
    )
    assert (
        penicillin["reaction"][0]["manifestation"][0]["coding"][0]["code"] == "422587007"
    )  # nausea
    assert penicillin["reaction"][0]["severity"] == "mild"
    albuterol = by_code(
        conversion.resources("MedicationStatement"), "573621", "medicationCodeableConcept"
    )
    assert albuterol["dosage"][0]["timing"] == {"repeat": {"period": 6, "periodUnit": "h"}}
    document = only(conversion.resources("DocumentReference"))
    assert document["type"]["coding"][0]["code"] == "34133-9"
    assert document["masterIdentifier"] == {
        "system": "urn:oid:2.16.840.1.113883.19.5.99999.1",
        "value": "TT988",
    }
    assert document["date"] == "2013-08-15T10:30:00-08:00"
    assert document["custodian"]["display"] == "Good Health HIE"
    entry = next(e for e in conversion.bundle["entry"] if e["resource"] is document)
    assert (
        entry["request"]["ifNoneExist"] == "identifier=urn:oid:2.16.840.1.113883.19.5.99999.1|TT988"
    )


def test_discharge_summary_entries_and_values(source: SourceInfo) -> None:
    conversion = convert("cda", DISCHARGE.read_bytes(), source)
    assert conversion.resource_counts() == {
        "Patient": 1, "Condition": 3, "AllergyIntolerance": 3, "MedicationStatement": 1,
        "Procedure": 1, "Observation": 4, "Binary": 1, "DocumentReference": 1,
    }  # fmt: skip
    categories = {
        c["category"][0]["coding"][0]["code"] for c in conversion.resources("Condition")
        if c["code"]["coding"][0]["code"] == "74400008"  # appendicitis
    }  # fmt: skip
    assert categories == {"encounter-diagnosis", "problem-list-item"}
    systolic = by_code(conversion.resources("Observation"), "8480-6")
    assert systolic["valueQuantity"] == {
        "value": 80,
        "unit": "mm[Hg]",
        "system": UCUM,
        "code": "mm[Hg]",
    }
    assert systolic["category"][0]["coding"][0]["code"] == "vital-signs"
    ibuprofen = only(conversion.resources("MedicationStatement"))
    assert ibuprofen["status"] == "intended"  # a discharge medication, moodCode INT
    # The sample reuses one id for its four vital signs: all four are kept, three without it.
    assert sum(i.severity == "warning" for i in conversion.issues) == 5


def test_referral_note_entries_and_values(source: SourceInfo) -> None:
    conversion = convert("cda", REFERRAL.read_bytes(), source)
    assert conversion.resource_counts() == {
        "Patient": 1, "AllergyIntolerance": 2, "MedicationStatement": 2, "Condition": 4,
        "Procedure": 3, "Observation": 14, "Binary": 1, "DocumentReference": 1,
    }  # fmt: skip
    pneumonia = by_code(conversion.resources("Condition"), "233604007")
    assert pneumonia["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert pneumonia["abatementDateTime"] == "1998-03-16"
    atenolol = by_code(
        conversion.resources("MedicationStatement"), "197380", "medicationCodeableConcept"
    )
    assert atenolol["status"] == "active"
    document = only(conversion.resources("DocumentReference"))
    assert document["type"]["coding"][0]["code"] == "57113-1"
    assert document["masterIdentifier"]["system"] == "urn:ietf:rfc:3986"


def test_embedded_pdf_is_extracted_byte_identical(source: SourceInfo) -> None:
    data = EMBEDDED.read_bytes()
    conversion = convert("cda", data, source)
    assert conversion.issues == []
    document = only(conversion.resources("DocumentReference"))
    xml, pdf = document["content"]
    assert xml["format"]["code"] == "urn:hl7-org:sdwg:ccda-nonXMLBody:2.1"
    assert pdf["attachment"]["contentType"] == "application/pdf"
    embedded_text = re.search(rb'representation="B64">([^<]*)<', data).group(1)  # type: ignore[union-attr]
    expected = base64.b64decode(b"".join(embedded_text.split()))
    stored = binaries(conversion)[pdf["attachment"]["url"]]
    assert stored == expected
    assert stored == (EMBEDDED.parent / "C-CDA_R2_UD_sample.pdf").read_bytes()
    assert pdf["attachment"]["size"] == len(expected) == 173792


def test_a_referenced_pdf_is_reported_and_only_the_cda_is_stored(source: SourceInfo) -> None:
    conversion = convert("cda", REFERENCED.read_bytes(), source)
    assert conversion.resource_counts() == {"Patient": 1, "Binary": 1, "DocumentReference": 1}
    assert [i.severity for i in conversion.issues] == ["warning"]
    assert "UD_sample.pdf" in conversion.issues[0].message


@pytest.mark.parametrize("path", SNIPPETS, ids=lambda p: p.name)
def test_snippets_are_fragments_and_are_refused_cleanly(path, source: SourceInfo) -> None:
    # Header and section fragments, not documents: some are not even namespace-well-formed.
    with pytest.raises((UnsupportedInput, MalformedInput)):
        convert("cda", path.read_bytes(), source)


def _with_bsn(bsn: str) -> bytes:
    data = (CCDA / "documents" / "CCD" / "CCD_2" / "CCD.xml").read_bytes()
    return data.replace(
        b'<id extension="12345679" root="2.16.840.1.113883.4.1"/>',
        f'<id extension="{bsn}" root="2.16.840.1.113883.2.4.6.3"/>'.encode(),
    )


def test_the_dutch_bsn_root_maps_to_the_bsn_system(source: SourceInfo) -> None:
    conversion = convert("cda", _with_bsn(TEST_BSN), source)
    patient_entry = conversion.bundle["entry"][0]
    assert {"use": "official", "system": BSN_SYSTEM, "value": TEST_BSN} in patient_entry[
        "resource"
    ]["identifier"]
    assert patient_entry["request"]["ifNoneExist"] == f"identifier={BSN_SYSTEM}|{TEST_BSN}"


def test_a_cda_bsn_failing_the_elfproef_is_an_error(source: SourceInfo) -> None:
    conversion = convert("cda", _with_bsn("999911121"), source)
    assert not conversion.ok
    assert BSN_SYSTEM not in str(conversion.resources("Patient"))


def test_a_dutch_custodian_is_identified_by_its_ura(source: SourceInfo) -> None:
    data = _with_bsn(TEST_BSN).replace(
        b'<id extension="321CX" root="1.1.1.1.1.1.1.1.3"/>',
        b'<id extension="87654321" root="2.16.528.1.1007.3.3"/>',
    )
    document = only(convert("cda", data, source).resources("DocumentReference"))
    assert document["custodian"]["identifier"] == {
        "system": "http://fhir.nl/fhir/NamingSystem/ura",
        "value": "87654321",
    }


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]><ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""


@pytest.mark.parametrize(
    "data",
    [
        XXE,
        LAUGHS,
        b"<!-- a comment first -->\n" + XXE.split(b"\n", 1)[1],
        XXE.decode()
        .replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>')
        .encode("utf-16"),
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">'
        + b"<a>" * 400
        + b"</a>" * 400
        + b"</ClinicalDocument>",
    ],
    ids=["xxe", "billion-laughs", "dtd-after-comment", "xxe-utf16", "depth-bomb"],
)
def test_hostile_xml_is_refused_as_unsafe(data: bytes, source: SourceInfo) -> None:
    with pytest.raises(UnsafeInput) as caught:
        convert("cda", data, source)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the message


def test_oversized_xml_is_refused_unread(source: SourceInfo) -> None:
    with pytest.raises(UnsafeInput, match="byte bound"):
        convert("cda", b"<ClinicalDocument>" + b" " * (20 * 1024 * 1024), source)


def test_a_document_without_a_patient_is_malformed(source: SourceInfo) -> None:
    with pytest.raises(MalformedInput, match="recordTarget"):
        convert(
            "cda",
            b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/></ClinicalDocument>',
            source,
        )


def test_the_sender_is_the_custodian_when_the_document_names_none() -> None:
    data = b"""<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3.4" extension="d1"/>
      <recordTarget><patientRole><id root="2.16.840.1.113883.2.4.6.3" extension="999911120"/>
      </patientRole></recordTarget><component><structuredBody/></component></ClinicalDocument>"""
    conversion = convert("cda", data, SourceInfo(organization=URA))
    document = only(conversion.resources("DocumentReference"))
    assert document["custodian"] == {
        "identifier": {"system": "http://fhir.nl/fhir/NamingSystem/ura", "value": URA}
    }
    assert "format" not in document["content"][0]  # no C-CDA header template: no format code


def test_dutch_name_parts_become_humanname_extensions(source: SourceInfo) -> None:
    data = _with_bsn(TEST_BSN).replace(
        b'<given>Isabella</given>\n\t\t\t\t\t<family qualifier="SP">Jones</family>',
        b'<given>Johanna</given><prefix qualifier="VV">van der</prefix><family>Berg</family>'
        b'<prefix qualifier="VV SP">de</prefix><family qualifier="SP">Vries</family>',
    )
    name = only(convert("cda", data, source).resources("Patient"))["name"][0]
    assert name["family"] == "van der Berg-de Vries"
    assert {e["url"].split("humanname-")[1]: e["valueString"] for e in name["_family"]["extension"]} == {
        "own-prefix": "van der", "own-name": "Berg", "partner-prefix": "de", "partner-name": "Vries"}  # fmt: skip
    assert name["given"] == ["Johanna"]
