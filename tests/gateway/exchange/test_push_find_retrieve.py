"""ITI-65 push, ITI-67 find and ITI-68 retrieve between hospitals, with the real sample documents
of shared/data (C-CDA documents, PDFs, the R4 Bundle-xds example), in JSON and in XML."""

from __future__ import annotations

import base64
import copy
import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from harness import FHIR_EXAMPLES, SHARED_DATA, valid_bsns

from gateway.exchange import mhd
from gateway.exchange.compose import provide_document_bundle
from gateway.fhir.formats import json_to_xml

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
DESIGNATION_TYPE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
CCDA = SHARED_DATA / "c-cda"
DOCUMENTS = sorted(
    [
        *CCDA.glob("documents/*/*.xml"),
        *CCDA.glob("documents/*/*/*.xml"),
        *CCDA.glob("documents/*/*/*.XML"),
        *CCDA.glob("microsoft-fhir-converter/*.ccda"),
        *CCDA.glob("unstructured/*/*.xml"),
        *CCDA.glob("unstructured/*/*.pdf"),
    ]
)
PDF = CCDA / "unstructured" / "CDA_with_Embedded_PDF_1" / "C-CDA_R2_UD_sample.pdf"


def post_bundle(fhir, bundle, fmt):
    if fmt == "json":
        return fhir.post("", json=bundle)
    return fhir.post(
        "",
        content=json_to_xml(json.dumps(bundle).encode()),
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"},
    )


def find_by_unique_id(fhir, unique_id):
    return fhir.get(
        "/DocumentReference", params={"identifier": f"urn:ietf:rfc:3986|{unique_id}"}
    ).json()


def pushed(network, bsn="999911120", **fields):
    """A Provide Document Bundle from the network's sender to its recipient about ``bsn``."""
    return provide_document_bundle(
        bsn=bsn, sender=network.sender.ura, recipients=[network.recipient.ura], **fields
    )


def pushed_at_once(server, hospital, bundles):
    """Each bundle pushed by ``hospital`` at the same moment, a thread each; the answers."""
    barrier = threading.Barrier(len(bundles))

    def push(bundle):
        with server.client(hospital) as fhir:
            fhir.get("/metadata")  # the token first, so that the pushes start together
            barrier.wait(timeout=30)
            return fhir.post("", json=bundle)

    with ThreadPoolExecutor(len(bundles)) as pool:
        return list(pool.map(push, bundles))


def letter_about(network, bsn, n):
    """A short letter ``n`` from the network's sender to its recipient about ``bsn``."""
    return pushed(network, bsn, content=f"brief {n}".encode(), content_type="text/plain")


def test_every_sample_document_is_one_of_the_ones_pushed():
    assert len(DOCUMENTS) == 14, [p.name for p in DOCUMENTS]


@pytest.mark.parametrize("fmt", ["json", "xml"])
@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.name)
def test_sample_document_pushed_is_found_and_retrieved_byte_identical(server, network, path, fmt):
    content = path.read_bytes()
    content_type = "application/pdf" if path.suffix == ".pdf" else "application/hl7-v3+xml"
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    bundle = provide_document_bundle(
        content=content,
        content_type=content_type,
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        type_code="34133-9",
        title=path.stem,
        unique_id=unique_id,
    )
    with server.client(network.sender) as fhir:
        response = post_bundle(fhir, bundle, fmt)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"][:3] for e in response.json()["entry"]]
    assert statuses[:3] == ["201", "201", "201"]  # SubmissionSet, DocumentReference, Binary
    with server.client(network.recipient) as fhir:
        found = find_by_unique_id(fhir, unique_id)
        assert found["total"] == 1
        attachment = found["entry"][0]["resource"]["content"][0]["attachment"]
        raw = fhir.get(f"/{attachment['url']}", headers={"Accept": content_type})
        assert raw.status_code == 200
        assert raw.content == content
        assert attachment["size"] == len(content)
    with server.client(network.bystander) as fhir:
        assert find_by_unique_id(fhir, unique_id)["total"] == 0


def test_iti67_finds_by_patient_bsn_status_type_and_post_search(server, network):
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    bundle = provide_document_bundle(
        content=PDF.read_bytes(),
        content_type="application/pdf",
        bsn="999990652",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        type_code="11488-4",
        title="Consultverslag",
        unique_id=unique_id,
    )
    with server.client(network.sender) as fhir:
        assert fhir.post("", json=bundle).status_code == 200
    query = {
        "patient.identifier": f"{BSN_SYSTEM}|999990652",
        "status": "current",
        "type": "http://loinc.org|11488-4",
    }
    with server.client(network.recipient) as fhir:
        by_get = fhir.get("/DocumentReference", params=query).json()
        by_post = fhir.post(
            "/DocumentReference/_search",
            data=query,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).json()
        ids = {e["resource"]["id"] for e in by_get["entry"]}
        assert len(ids) == 1
        assert {e["resource"]["id"] for e in by_post["entry"]} == ids
        # The patient was shared with the recipient along with the documents.
        patient_ref = by_get["entry"][0]["resource"]["subject"]["reference"]
        patient = fhir.get(f"/{patient_ref}").json()
        assert {"system": BSN_SYSTEM, "value": "999990652"} in patient["identifier"]
        # The SubmissionSet too, naming its source and its recipient.
        submission = fhir.get(
            "/List", params={"code": f"{mhd.LIST_TYPES}|submissionset", "patient": patient_ref}
        ).json()
        assert submission["total"] >= 1


def test_r4_bundle_xds_example_is_accepted_as_a_provide_document_bundle(server, network):
    xds = json.loads((FHIR_EXAMPLES / "Bundle" / "Bundle-xds.json").read_text())
    document = next(e for e in xds["entry"] if e["resource"]["resourceType"] == "DocumentReference")
    binary = next(e for e in xds["entry"] if e["resource"]["resourceType"] == "Binary")
    unique_id = document["resource"]["masterIdentifier"]["value"] + f".{uuid.uuid4().int % 10**9}"
    document["resource"]["masterIdentifier"]["value"] = unique_id
    # The example predates MHD: add the SubmissionSet an ITI-65 bundle carries, addressed to the
    # partner, and the patient's BSN so that the partner can match her.
    patient = next(e for e in xds["entry"] if e["resource"]["resourceType"] == "Patient")
    patient["resource"]["identifier"].append({"system": BSN_SYSTEM, "value": "999911120"})
    source_id = f"urn:oid:1.3.6.1.4.1.21367.{uuid.uuid4().int % 10**9}"
    xds["entry"].insert(
        0,
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "List",
                "extension": [
                    {
                        "url": mhd.SOURCE_ID,
                        "valueIdentifier": {"value": source_id},
                    },
                    {
                        "url": DESIGNATION_TYPE,
                        "valueCodeableConcept": {
                            "coding": [{"system": "http://snomed.info/sct", "code": "225728007"}]
                        },
                    },
                    {
                        "url": mhd.INTENDED_RECIPIENT,
                        "valueReference": {
                            "identifier": {"system": URA_SYSTEM, "value": network.recipient.ura}
                        },
                    },
                ],
                "status": "current",
                "mode": "working",
                "code": {"coding": [{"system": mhd.LIST_TYPES, "code": "submissionset"}]},
                "subject": {"reference": patient["fullUrl"]},
                "date": "2013-07-01T23:11:33+10:00",
                "entry": [{"item": {"reference": document["fullUrl"]}}],
            },
            "request": {"method": "POST", "url": "List"},
        },
    )
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=xds)
    assert response.status_code == 200, response.text
    assert len(response.json()["entry"]) == len(xds["entry"])
    with server.client(network.recipient) as fhir:
        found = find_by_unique_id(fhir, unique_id)
        assert found["total"] == 1
        stored = found["entry"][0]["resource"]
        # Relative references resolved against the entries' fullUrl base.
        assert stored["subject"]["reference"].startswith("Patient/")
        assert all(a["reference"].startswith("Practitioner/") for a in stored["author"])
        author = fhir.get(f"/{stored['author'][0]['reference']}")
        assert author.status_code == 200  # the author came along and was shared
        # ITI-67 by the author's name (MHD's author.given and author.family chains).
        for chain, name, expected in (
            ("author.family", "Dopplemeyer", 1),
            ("author.given", "Gerald", 1),
            ("author.family", "Nobody", 0),
        ):
            by_author = fhir.get(
                "/DocumentReference",
                params={"identifier": f"urn:ietf:rfc:3986|{unique_id}", chain: name},
            ).json()
            assert by_author["total"] == expected, (chain, name)
        # ITI-67 by the document's creation (2005-12-24), MHD's own search parameter.
        for creation, expected in (("2005-12-24", 1), ("ge2005-12-01", 1), ("lt2005-12-24", 0)):
            by_creation = fhir.get(
                "/DocumentReference",
                params={"identifier": f"urn:ietf:rfc:3986|{unique_id}", "creation": creation},
                headers={"Prefer": "handling=strict"},
            )
            assert by_creation.json()["total"] == expected, (creation, by_creation.text)
        # ITI-66 finds the SubmissionSet by its sourceId and designationType.
        for params, expected in (
            ({"sourceId": source_id}, 1),
            ({"sourceId": source_id, "designationType": "http://snomed.info/sct|225728007"}, 1),
            ({"sourceId": source_id, "designationType": "http://snomed.info/sct|1"}, 0),
            ({"sourceId": "urn:oid:1.2.3.999"}, 0),
        ):
            lists = fhir.get("/List", params=params, headers={"Prefer": "handling=strict"})
            assert lists.json()["total"] == expected, (params, lists.text)
        url = stored["content"][0]["attachment"]["url"]
        raw = fhir.get(f"/{url}", headers={"Accept": "text/plain"})
        assert raw.content == base64.b64decode(binary["resource"]["data"])


MHD_RESPONDER = SHARED_DATA / "ihe-mhd" / "resources"


def test_every_search_parameter_of_the_mhd_document_responder_is_supported(server, network):
    """The IHE MHD Document Responder's CapabilityStatement (ITI-66, ITI-67) lists the search
    parameters a Document Consumer may use: each is accepted (strict handling refuses an
    unknown one) and the gateway's CapabilityStatement names the MHD actors it plays."""
    statement = json.loads(
        (MHD_RESPONDER / "CapabilityStatement-IHE.MHD.DocumentResponder.json").read_text()
    )
    samples = {"date": "ge2020-01-01", "reference": "Patient/a"}  # by type; others "a"
    checked = []
    with server.client(network.recipient) as fhir:
        ours = fhir.get("/metadata").json()
        assert statement["url"] in ours["instantiates"]
        for resource in statement["rest"][0]["resource"]:
            for param in resource.get("searchParam", []):
                # The IG spells _lastUpdated in lower case; FHIR names are case-sensitive.
                name = "_lastUpdated" if param["name"] == "_lastupdated" else param["name"]
                value = samples.get(param.get("type", ""), "a")
                answer = fhir.get(
                    f"/{resource['type']}",
                    params={name: value},
                    headers={"Prefer": "handling=strict"},
                )
                assert answer.status_code == 200, (resource["type"], name, answer.text)
                checked.append(f"{resource['type']}?{name}")
    assert {"DocumentReference?creation", "List?sourceId", "List?designationType"} <= set(checked)


def test_a_document_kept_to_oneself_needs_no_recipient_and_no_bsn(server, network):
    bundle = provide_document_bundle(
        content=b"Interne notitie",
        content_type="text/plain",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[],
    )
    patient = bundle["entry"][3]["resource"]
    patient["identifier"] = [{"system": "urn:oid:2.16.840.1.113883.2.4.3.99.1", "value": "P123"}]
    bundle["entry"][3]["request"].pop("ifNoneExist")
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle)
        assert response.status_code == 200, response.text
    statuses = [e["response"]["status"][:3] for e in response.json()["entry"]]
    assert statuses == ["201"] * 4


def test_retrieve_answers_404_406_and_410_as_iti68_specifies(server, network):
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    first = provide_document_bundle(
        content=PDF.read_bytes(),
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        unique_id=unique_id,
    )
    with server.client(network.sender) as fhir:
        created = fhir.post("", json=first).json()
    document_id = created["entry"][1]["response"]["location"].split("/")[1]
    binary_id = created["entry"][2]["response"]["location"].split("/")[1]
    with server.client(network.recipient) as fhir:
        assert fhir.get(f"/Binary/{uuid.uuid4()}", headers={"Accept": "*/*"}).status_code == 404
        refused = fhir.get(f"/Binary/{binary_id}", headers={"Accept": "text/plain"})
        assert refused.status_code == 406
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert fhir.get(f"/Binary/{binary_id}", headers={"Accept": "*/*"}).status_code == 200
        assert (
            fhir.get(f"/Binary/{binary_id}", headers={"Accept": "application/*"}).status_code == 200
        )
    replacement = provide_document_bundle(
        content=b"%PDF-1.4 corrected letter",
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        replaces=document_id,
    )
    with server.client(network.sender) as fhir:
        assert fhir.post("", json=replacement).status_code == 200
        old = fhir.get(f"/DocumentReference/{document_id}").json()
        assert old["status"] == "superseded"
    with server.client(network.recipient) as fhir:
        gone = fhir.get(f"/Binary/{binary_id}", headers={"Accept": "application/pdf"})
        assert gone.status_code == 410
        assert "superseded" in gone.json()["issue"][0]["diagnostics"]
        current = fhir.get(
            "/DocumentReference",
            params={
                "patient.identifier": f"{BSN_SYSTEM}|999911120",
                "status": "current",
                "relatesto": f"DocumentReference/{document_id}",
            },
        ).json()
        assert current.get("total") == 1, current


def test_mhd_update_document_refs_patch_supersedes_in_the_same_bundle(server, network):
    with server.client(network.sender) as fhir:
        first = fhir.post(
            "",
            json=provide_document_bundle(
                content=b"%PDF-1.4 v1",
                content_type="application/pdf",
                bsn="999911120",
                sender=network.sender.ura,
                recipients=[network.recipient.ura],
            ),
        ).json()
        old_id = first["entry"][1]["response"]["location"].split("/")[1]
        second = provide_document_bundle(
            content=b"%PDF-1.4 v2",
            content_type="application/pdf",
            bsn="999911120",
            sender=network.sender.ura,
            recipients=[network.recipient.ura],
            replaces=old_id,
        )
        second["entry"].append(
            {
                "resource": {
                    "resourceType": "Parameters",
                    "parameter": [
                        {
                            "name": "operation",
                            "part": [
                                {"name": "type", "valueCode": "replace"},
                                {"name": "path", "valueString": "DocumentReference.status"},
                                {"name": "value", "valueCode": "superseded"},
                            ],
                        }
                    ],
                },
                "request": {"method": "PATCH", "url": f"DocumentReference/{old_id}"},
            }
        )
        response = fhir.post("", json=second)
        assert response.status_code == 200, response.text
        entries = response.json()["entry"]
        assert entries[-1]["response"]["location"].startswith(f"DocumentReference/{old_id}/")
        assert fhir.get(f"/DocumentReference/{old_id}").json()["status"] == "superseded"


def test_the_same_document_sent_twice_is_stored_once(server, network):
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    submission = f"urn:uuid:{uuid.uuid4()}"

    def bundle(submission_id=submission):
        return pushed(
            network,
            content=PDF.read_bytes(),
            content_type="application/pdf",
            unique_id=unique_id,
            submission_id=submission_id,
        )

    with server.client(network.sender) as fhir:
        first = fhir.post("", json=bundle()).json()
        again = fhir.post("", json=bundle())  # a retry after a lost answer
        assert again.status_code == 200
        entries = again.json()["entry"]
        assert [e["response"]["status"][:3] for e in entries[:3]] == ["200", "200", "200"]
        assert all("outcome" in e["response"] for e in entries[:3])
        assert entries[1]["response"]["location"] == first["entry"][1]["response"]["location"]
        # Re-sent under a new SubmissionSet id: still no copy, and no second notification.
        third = fhir.post("", json=bundle(f"urn:uuid:{uuid.uuid4()}")).json()
        assert third["entry"][1]["response"]["status"].startswith("200")
        first_set = first["entry"][0]["response"]["location"].split("/_history")[0]
        assert third["entry"][0]["response"]["location"].startswith(first_set)
        assert find_by_unique_id(fhir, unique_id)["total"] == 1
        document = first["entry"][1]["response"]["location"].split("/_history")[0]
        notifications = fhir.get("/Task", params={"focus": first_set}).json()
        assert notifications["total"] == 1
        assert document in json.dumps(notifications["entry"][0]["resource"]["input"])
    with server.client(network.recipient) as fhir:
        assert find_by_unique_id(fhir, unique_id)["total"] == 1


@pytest.mark.parametrize("prefer", ["return=minimal", "return=representation"])
def test_line_wrapped_base64_larger_than_a_chunk_is_stored_byte_identical(server, network, prefer):
    """EHR exports wrap base64 at 76 characters (MIME); FHIR allows that whitespace. Content of
    several 1 MiB chunks is decoded a slice at a time before the transaction (minimal answer)
    or in it (when the Binary is echoed)."""
    content = uuid.uuid4().bytes * (160 * 1024) + b"end"  # 2.5 MiB and 3 bytes: padding at the end
    text = base64.b64encode(content).decode()
    wrapped = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    bundle = provide_document_bundle(
        content=content,
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        unique_id=unique_id,
    )
    binary = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary")
    binary["resource"]["data"] = wrapped
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle, headers={"Prefer": prefer})
        assert response.status_code == 200, response.text[:500]
        assert [e["response"]["status"][:3] for e in response.json()["entry"][:3]] == ["201"] * 3
    with server.client(network.recipient) as fhir:
        attachment = find_by_unique_id(fhir, unique_id)["entry"][0]["resource"]["content"][0]
        raw = fhir.get(f"/{attachment['attachment']['url']}", headers={"Accept": "*/*"})
        assert raw.status_code == 200
        assert raw.content == content


def test_the_same_unique_id_from_another_hospital_is_another_document(server, network):
    unique_id = f"urn:uuid:{uuid.uuid4()}"
    for sender, recipient in (
        (network.sender, network.recipient),
        (network.bystander, network.recipient),
    ):
        with server.client(sender) as fhir:
            response = fhir.post(
                "",
                json=provide_document_bundle(
                    content=f"brief van {sender.ura}".encode(),
                    content_type="text/plain",
                    bsn="999911120",
                    sender=sender.ura,
                    recipients=[recipient.ura],
                    unique_id=unique_id,
                ),
            )
            assert response.json()["entry"][1]["response"]["status"].startswith("201")
    with server.client(network.recipient) as fhir:
        assert find_by_unique_id(fhir, unique_id)["total"] == 2


def test_resending_a_unique_id_with_other_content_is_refused(server, network):
    unique_id = f"urn:uuid:{uuid.uuid4()}"

    def bundle(text):
        return pushed(network, content=text, content_type="text/plain", unique_id=unique_id)

    with server.client(network.sender) as fhir:
        assert fhir.post("", json=bundle(b"eerste versie")).status_code == 200
        refused = fhir.post("", json=bundle(b"andere inhoud"))
    assert refused.status_code == 422
    issue = refused.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "XDSNonIdenticalHash"


def test_a_submission_set_resent_with_other_documents_is_refused(server, network):
    submission = f"urn:uuid:{uuid.uuid4()}"
    second_document = f"urn:uuid:{uuid.uuid4()}"

    def bundle(unique_id):
        return pushed(
            network,
            content=b"verslag",
            content_type="text/plain",
            unique_id=unique_id,
            submission_id=submission,
        )

    with server.client(network.sender) as fhir:
        assert fhir.post("", json=bundle(f"urn:uuid:{uuid.uuid4()}")).status_code == 200
        refused = fhir.post("", json=bundle(second_document))
        assert refused.status_code == 422, refused.text
        issue = refused.json()["issue"][0]
        assert issue["details"]["coding"][0]["code"] == "XDSDuplicateUniqueIdInRegistry"
        assert find_by_unique_id(fhir, second_document)["total"] == 0


def test_comprehensive_metadata_names_the_missing_element(server, network):
    bundle = provide_document_bundle(
        content=b"%PDF-1.4 x",
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        type_code="18842-5",
    )
    bundle["meta"]["profile"] = [
        f"{mhd.MHD}/StructureDefinition/IHE.MHD.Comprehensive.ProvideBundle"
    ]
    with server.client(network.sender) as fhir:
        refused = fhir.post("", json=bundle)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["DocumentReference.category"]
    complete = copy.deepcopy(bundle)
    document = complete["entry"][1]["resource"]
    document["category"] = [{"coding": [{"system": "http://loinc.org", "code": "34133-9"}]}]
    document["securityLabel"] = [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "N"}
            ]
        }
    ]
    document["content"][0]["attachment"]["language"] = "nl-NL"
    document["content"][0]["format"] = {
        "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
        "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
    }
    document["contained"] = [
        {
            "resourceType": "Patient",
            "id": "src",
            "identifier": [{"system": BSN_SYSTEM, "value": "999911120"}],
        }
    ]
    document["context"] = {
        "facilityType": {"coding": [{"system": "http://snomed.info/sct", "code": "22232009"}]},
        "practiceSetting": {"coding": [{"system": "http://snomed.info/sct", "code": "394802001"}]},
        "sourcePatientInfo": {"reference": "#src"},
    }
    with server.client(network.sender) as fhir:
        accepted = fhir.post("", json=complete)
    assert accepted.status_code == 200, accepted.text


def test_pushes_about_a_new_patient_at_once_create_one_patient_record(server, network):
    """Ten pushes at once about a patient the sender never had, each bundle carrying the
    Patient as a plain create (no ifNoneExist): the BSN matches them to one record. On
    PostgreSQL up to eight of them once created their own."""
    bsn = next(valid_bsns(999_940_000))
    bundles = [letter_about(network, bsn, n) for n in range(10)]
    for bundle in bundles:
        patient = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        del patient["request"]["ifNoneExist"]
    answers = pushed_at_once(server, network.sender, bundles)
    assert [answer.status_code for answer in answers] == [200] * 10
    with server.client(network.sender) as fhir:
        patients = fhir.get("/Patient", params={"identifier": f"{BSN_SYSTEM}|{bsn}"}).json()
        assert patients["total"] == 1
        documents = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": f"{BSN_SYSTEM}|{bsn}", "_summary": "count"},
        ).json()
        assert documents["total"] == 10


def test_concurrent_pushes_about_one_patient_all_succeed(server, network):
    """Sixteen pushes at once about a patient the sender has but never sent before: each is
    stored and the recipient sees every document. On PostgreSQL two of them once shared the
    patient with the recipient at the same moment and one answered 500."""
    bsn = next(valid_bsns(999_930_000))
    with server.client(network.sender) as fhir:
        patient = {"resourceType": "Patient", "identifier": [{"system": BSN_SYSTEM, "value": bsn}]}
        assert fhir.post("/Patient", json=patient).status_code == 201
    answers = pushed_at_once(
        server, network.sender, [letter_about(network, bsn, n) for n in range(16)]
    )
    assert [answer.status_code for answer in answers] == [200] * 16
    with server.client(network.recipient) as fhir:
        found = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": f"{BSN_SYSTEM}|{bsn}", "_summary": "count"},
        ).json()
        assert found["total"] == 16
        patients = fhir.get("/Patient", params={"identifier": f"{BSN_SYSTEM}|{bsn}"}).json()
        assert patients["total"] == 1


@pytest.mark.parametrize("round_", range(3))
def test_the_same_submission_sent_many_times_at_once_is_stored_once(server, network, round_):
    """Twelve identical pushes at the same moment (a sender's retries racing each other): each
    answers 200, and one SubmissionSet, one document and one notification are stored. On
    PostgreSQL each push once looked for the document before any of them had committed it,
    and stored its own copy."""
    with server.client(network.sender) as fhir:  # the patient is known: nothing else waits
        earlier = fhir.post("", json=pushed(network, content=b"eerder", content_type="text/plain"))
        assert earlier.status_code == 200
    submission_id = f"urn:uuid:{uuid.uuid4()}"
    bundle = pushed(
        network,
        content=f"brief {round_}, twaalf keer tegelijk verstuurd".encode(),
        content_type="text/plain",
        unique_id=f"urn:uuid:{uuid.uuid4()}",
        submission_id=submission_id,
    )
    unique_id = bundle["entry"][1]["resource"]["masterIdentifier"]["value"]
    answers = pushed_at_once(server, network.sender, [bundle] * 12)
    assert [answer.status_code for answer in answers] == [200] * 12
    stored = {
        tuple(e["response"]["location"].split("/_history")[0] for e in answer.json()["entry"])
        for answer in answers
    }
    assert len(stored) == 1, stored
    submission_set = next(iter(stored))[0]
    with server.client(network.sender) as fhir:
        assert find_by_unique_id(fhir, unique_id)["total"] == 1
        sets = fhir.get("/List", params={"identifier": submission_id, "_summary": "count"})
        assert sets.json()["total"] == 1
        notifications = fhir.get("/Task", params={"focus": submission_set}).json()
        assert notifications["total"] == 1
    with server.client(network.recipient) as fhir:
        assert find_by_unique_id(fhir, unique_id)["total"] == 1
