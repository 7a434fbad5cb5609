"""Bad Provide Document Bundles: an OperationOutcome with the MHD (XDS) error code, nothing stored."""

from __future__ import annotations

import base64
import copy
import uuid

import pytest

from gateway.content.envelope import CHUNK_BYTES
from gateway.exchange import mhd
from gateway.exchange.compose import provide_document_bundle
from gateway.fhir.formats import json_to_xml

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
COUNTED = ("DocumentReference", "List", "Binary", "Task", "Patient")


@pytest.fixture
def bundle(network):
    return provide_document_bundle(
        content=b"%PDF-1.4 ontslagbrief",
        content_type="application/pdf",
        bsn="999911120",
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        type_code="18842-5",
        unique_id=f"urn:uuid:{uuid.uuid4()}",
    )


def stored_counts(fhir):
    return {t: fhir.get(f"/{t}", params={"_summary": "count"}).json()["total"] for t in COUNTED}


def refused(server, network, bundle, *, status=422, **post):
    """Post the bundle as the sender; return the OperationOutcome's first issue after checking
    that the status is ``status`` and nothing was stored."""
    with server.client(network.sender) as fhir:
        before = stored_counts(fhir)
        response = (
            fhir.post("", json=bundle, **post) if bundle is not None else fhir.post("", **post)
        )
        assert response.status_code == status, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert stored_counts(fhir) == before, "a refused submission stored something"
    return outcome["issue"][0]


def xds_code(issue):
    return issue["details"]["coding"][0]["code"]


def entry_of(bundle, res_type):
    return next(e for e in bundle["entry"] if e["resource"]["resourceType"] == res_type)


def test_a_bundle_without_submission_set_is_refused(server, network, bundle):
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "List"]
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert "SubmissionSet" in issue["diagnostics"]


def test_two_submission_sets_are_refused(server, network, bundle):
    second = copy.deepcopy(entry_of(bundle, "List"))
    second["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    bundle["entry"].append(second)
    assert xds_code(refused(server, network, bundle)) == "XDSRegistryMetadataError"


def test_a_document_reference_without_content_is_refused(server, network, bundle):
    del entry_of(bundle, "DocumentReference")["resource"]["content"]
    issue = refused(server, network, bundle, status=400)  # invalid FHIR: content is 1..*
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert "content" in issue["diagnostics"]


def test_an_attachment_without_url_is_refused(server, network, bundle):
    del entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]["url"]
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert issue["expression"] == ["DocumentReference.content"]


def test_content_inline_in_the_attachment_is_refused(server, network, bundle):
    attachment = entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]
    attachment["data"] = base64.b64encode(b"%PDF-1.4").decode()
    assert xds_code(refused(server, network, bundle)) == "XDSRegistryMetadataError"


def test_a_hash_that_does_not_match_the_content_is_refused(server, network, bundle):
    attachment = entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]
    attachment["hash"] = base64.b64encode(b"\x00" * 20).decode()
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSNonIdenticalHash"


def test_a_size_that_does_not_match_the_content_is_refused(server, network, bundle):
    attachment = entry_of(bundle, "DocumentReference")["resource"]["content"][0]["attachment"]
    attachment["size"] += 1
    assert xds_code(refused(server, network, bundle)) == "XDSNonIdenticalSize"


@pytest.mark.parametrize(
    "damage", ["*", "QQ=="], ids=["a character outside base64", "padding inside the text"]
)
def test_large_content_that_is_not_base64_is_refused(server, network, bundle, damage):
    """Above 64 KiB the models leave base64 to the content store, which decodes it a slice of
    one chunk at a time: padding that ends a slice but not the text is refused too."""
    text = base64.b64encode(bytes(range(256)) * 6144).decode()  # 1.5 MiB: two slices
    cut = CHUNK_BYTES // 3 * 4 - len(damage)  # the damage ends the first slice
    entry_of(bundle, "Binary")["resource"]["data"] = text[:cut] + damage + text[cut:]
    issue = refused(server, network, bundle, status=400)
    assert xds_code(issue) == "XDSMissingDocument"
    assert "base64" in issue["diagnostics"]


def test_a_binary_referenced_but_missing_is_refused(server, network, bundle):
    bundle["entry"] = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Binary"]
    assert xds_code(refused(server, network, bundle)) == "XDSMissingDocument"


def test_a_binary_no_document_describes_is_refused(server, network, bundle):
    extra = copy.deepcopy(entry_of(bundle, "Binary"))
    extra["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    bundle["entry"].append(extra)
    assert xds_code(refused(server, network, bundle)) == "XDSMissingDocumentMetadata"


def test_data_of_another_patient_in_the_same_submission_is_refused(server, network, bundle):
    document = entry_of(bundle, "DocumentReference")["resource"]
    document["subject"] = {"identifier": {"system": BSN_SYSTEM, "value": "999990652"}}
    assert xds_code(refused(server, network, bundle)) == "XDSPatientIdDoesNotMatch"


def test_an_invalid_bsn_is_refused(server, network, bundle):
    patient = entry_of(bundle, "Patient")
    patient["resource"]["identifier"][0]["value"] = "999911121"  # fails the elfproef
    patient["request"].pop("ifNoneExist")
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSUnknownPatientId"
    assert "elfproef" in issue["diagnostics"]


def test_a_legacy_bsn_system_is_accepted_and_stored_in_its_uri_form(server, network, bundle):
    patient = entry_of(bundle, "Patient")
    patient["resource"]["identifier"] = [
        {"system": "urn:oid:2.16.840.1.113883.2.4.6.3", "value": "999993653"}
    ]
    patient["request"].pop("ifNoneExist")
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle)
        assert response.status_code == 200, response.text
        location = response.json()["entry"][3]["response"]["location"].split("/_history")[0]
        stored = fhir.get(f"/{location}").json()
    assert stored["identifier"] == [{"system": BSN_SYSTEM, "value": "999993653"}]
    with server.client(network.recipient) as fhir:
        found = fhir.get(
            "/DocumentReference",
            params={"patient.identifier": "urn:oid:2.16.840.1.113883.2.4.6.3|999993653"},
        ).json()
        assert found["total"] == 1


def test_an_unknown_recipient_is_refused(server, network, bundle):
    submission_set = entry_of(bundle, "List")["resource"]
    recipient = next(e for e in submission_set["extension"] if e["url"] == mhd.INTENDED_RECIPIENT)
    recipient["valueReference"]["identifier"]["value"] = "99999999"
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "UnknownRecipient"
    assert "99999999" in issue["diagnostics"]


def test_a_recipient_can_be_named_by_its_organization_reference(server, network, bundle):
    with server.client(network.sender) as fhir:
        directory = fhir.get(
            "/Organization",
            params={"identifier": f"http://fhir.nl/fhir/NamingSystem/ura|{network.recipient.ura}"},
        ).json()
        org_id = directory["entry"][0]["resource"]["id"]
        submission_set = entry_of(bundle, "List")["resource"]
        recipient = next(
            e for e in submission_set["extension"] if e["url"] == mhd.INTENDED_RECIPIENT
        )
        recipient["valueReference"] = {"reference": f"Organization/{org_id}"}
        assert fhir.post("", json=bundle).status_code == 200


def test_addressing_the_sender_itself_is_refused(server, network, bundle):
    submission_set = entry_of(bundle, "List")["resource"]
    recipient = next(e for e in submission_set["extension"] if e["url"] == mhd.INTENDED_RECIPIENT)
    recipient["valueReference"]["identifier"]["value"] = network.sender.ura
    assert xds_code(refused(server, network, bundle)) == "UnknownRecipient"


def test_a_submission_set_without_source_id_is_refused(server, network, bundle):
    submission_set = entry_of(bundle, "List")["resource"]
    submission_set["extension"] = [
        e for e in submission_set["extension"] if e["url"] != mhd.SOURCE_ID
    ]
    assert xds_code(refused(server, network, bundle)) == "XDSRegistryMetadataError"


def test_folders_are_refused(server, network, bundle):
    folder = copy.deepcopy(entry_of(bundle, "List"))
    folder["fullUrl"] = f"urn:uuid:{uuid.uuid4()}"
    folder["resource"]["code"]["coding"][0]["code"] = "folder"
    bundle["entry"].append(folder)
    issue = refused(server, network, bundle)
    assert "Folders" in issue["diagnostics"]


def test_other_interactions_have_no_place_in_a_provide_bundle(server, network, bundle):
    bundle["entry"].append({"request": {"method": "DELETE", "url": "Observation/x"}})
    assert xds_code(refused(server, network, bundle)) == "XDSRegistryMetadataError"


def test_replacing_a_document_of_another_hospital_is_refused(server, network, bundle):
    with server.client(network.recipient) as fhir:
        theirs = fhir.post(
            "",
            json=provide_document_bundle(
                content=b"%PDF-1.4 van de ander",
                content_type="application/pdf",
                bsn="999911120",
                sender=network.recipient.ura,
                recipients=[network.sender.ura],
            ),
        ).json()
    their_document = theirs["entry"][1]["response"]["location"].split("/")[1]
    entry_of(bundle, "DocumentReference")["resource"]["relatesTo"] = [
        {"code": "replaces", "target": {"reference": f"DocumentReference/{their_document}"}}
    ]
    issue = refused(server, network, bundle)
    assert "not a document of the sending organisation" in issue["diagnostics"]


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><!DOCTYPE Bundle [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>'
        b"<entry><resource><Binary><contentType value='text/plain'/><data value='&x;'/></Binary>"
        b"</resource></entry></Bundle>",
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b'<Bundle xmlns="http://hl7.org/fhir"><type value="&lol3;"/></Bundle>',
    ],
    ids=["external-entity", "entity-expansion"],
)
def test_xml_with_a_doctype_or_entities_is_refused(server, network, xml):
    issue = refused(
        server,
        network,
        None,
        status=400,
        content=xml,
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"},
    )
    assert issue["code"] in ("security", "structure")
    assert "root:" not in issue["diagnostics"]  # no file content leaked into the answer


def test_a_valid_xml_submission_is_accepted(server, network, bundle):
    import json

    with server.client(network.sender) as fhir:
        response = fhir.post(
            "",
            content=json_to_xml(json.dumps(bundle).encode()),
            headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+xml")
    assert b"transaction-response" in response.content


def test_a_document_whose_narrative_carries_a_script_is_refused(server, network, bundle):
    """A narrative travels to the recipient's viewers as it is: active content in it is refused
    before anything is stored (FHIR txt-1)."""
    entry_of(bundle, "DocumentReference")["resource"]["text"] = {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ontslagbrief<script>fetch("//x")</script></div>',
    }
    issue = refused(server, network, bundle, status=400)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert issue["code"] == "invariant"
    assert "<script>" in issue["diagnostics"]


def sent(server, network, **options):
    """Push a document as the sender; its DocumentReference id."""
    bundle = provide_document_bundle(
        content=f"%PDF-1.4 {uuid.uuid4()}".encode(),
        content_type="application/pdf",
        bsn=options.pop("bsn", "999911120"),
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        **options,
    )
    with server.client(network.sender) as fhir:
        response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    return response.json()["entry"][1]["response"]["location"].split("/")[1]


def replacing(network, old_id, bsn="999911120"):
    return provide_document_bundle(
        content=f"%PDF-1.4 {uuid.uuid4()}".encode(),
        content_type="application/pdf",
        bsn=bsn,
        sender=network.sender.ura,
        recipients=[network.recipient.ura],
        replaces=old_id,
    )


def test_a_document_replaced_already_cannot_be_replaced_again(server, network):
    """A second replacement of one document would fork its line into two current documents
    (XDS: XDSRegistryDeprecatedDocumentError)."""
    old = sent(server, network)
    sent(server, network, replaces=old)
    issue = refused(server, network, replacing(network, old))
    assert xds_code(issue) == "XDSRegistryDeprecatedDocumentError"
    assert "superseded" in issue["diagnostics"]


def test_a_replacement_resent_after_a_lost_answer_is_not_a_second_replacement(server, network):
    old = sent(server, network)
    again = replacing(network, old)
    with server.client(network.sender) as fhir:
        assert fhir.post("", json=again).status_code == 200
        retry = fhir.post("", json=again)
        assert retry.status_code == 200, retry.text
        found = fhir.get("/DocumentReference", params={"relatesto": f"DocumentReference/{old}"})
        assert found.json()["total"] == 1


def test_a_replacement_about_another_patient_is_refused(server, network):
    old = sent(server, network)
    issue = refused(server, network, replacing(network, old, bsn="999990652"))
    assert xds_code(issue) == "XDSPatientIdDoesNotMatch"
    with server.client(network.sender) as fhir:
        assert fhir.get(f"/DocumentReference/{old}").json()["status"] == "current"


def test_a_provide_bundle_sent_as_a_batch_is_refused(server, network, bundle):
    """As a batch it would skip every MHD check, store what it could and notify nobody."""
    bundle["type"] = "batch"
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert "transaction" in issue["diagnostics"]


def test_a_submission_set_naming_an_entry_that_is_not_there_is_refused(server, network, bundle):
    submission_set = entry_of(bundle, "List")["resource"]
    submission_set["entry"].append({"item": {"reference": f"urn:uuid:{uuid.uuid4()}"}})
    issue = refused(server, network, bundle, status=400)
    assert "names no" in issue["diagnostics"]


def test_a_document_the_submission_set_does_not_list_is_refused(server, network, bundle):
    entry_of(bundle, "List")["resource"]["entry"] = []
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert "does not list" in issue["diagnostics"]


@pytest.mark.parametrize("form", ["identifier", "reference"])
def test_a_custodian_other_than_the_sender_is_refused(server, network, bundle, form):
    """The sender cannot present its document as another hospital's."""
    if form == "identifier":
        custodian = {"identifier": {"system": URA_SYSTEM, "value": network.bystander.ura}}
    else:
        with server.client(network.sender) as fhir:
            found = fhir.get(
                "/Organization", params={"identifier": f"{URA_SYSTEM}|{network.bystander.ura}"}
            ).json()
        custodian = {"reference": f"Organization/{found['entry'][0]['resource']['id']}"}
    entry_of(bundle, "DocumentReference")["resource"]["custodian"] = custodian
    issue = refused(server, network, bundle)
    assert xds_code(issue) == "XDSRegistryMetadataError"
    assert "custodian" in issue["diagnostics"]


def test_the_senders_own_custodian_is_accepted(server, network, bundle):
    document = entry_of(bundle, "DocumentReference")["resource"]
    document["custodian"] = {"identifier": {"system": URA_SYSTEM, "value": network.sender.ura}}
    with server.client(network.sender) as fhir:
        assert fhir.post("", json=bundle).status_code == 200
