"""Real FHIR clients from PyPI drive the server over HTTP: fhirclient (SMART) and fhirpy."""

from __future__ import annotations

import asyncio
import uuid

from fhirclient import client as smart_client
from fhirclient.models.bundle import Bundle as SmartBundle
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from harness import SmartAuth, unique_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"


def token(server) -> str:
    """An access token got the SMART Backend Services way, for the clients to send."""
    return SmartAuth(server.default_hospital, server.token_url).token()


def test_fhirclient_create_read_update_search_with_paging(server):
    smart = smart_client.FHIRClient(
        settings={"app_id": "zorgbrug-conformance", "api_base": server.fhir + "/"}
    )
    smart.server.session.headers["Authorization"] = f"Bearer {token(server)}"
    family = f"Smart{uuid.uuid4().hex[:8]}"
    created_ids = []
    for i in range(7):
        patient = SmartPatient(
            {"name": [{"family": family, "given": [f"G{i}"]}], "gender": "female"}
        )
        result = patient.create(smart.server)
        created_ids.append(result["id"])
    read = SmartPatient.read(created_ids[0], smart.server)
    assert read.name[0].family == family

    read.gender = "male"
    read.update(smart.server)
    assert SmartPatient.read(created_ids[0], smart.server).gender == "male"

    search = SmartPatient.where(struct={"family": family, "_count": "3"})
    bundle = search.perform(smart.server)
    assert isinstance(bundle, SmartBundle)
    assert bundle.total is None  # more pages follow, and the total was not asked for
    counted = SmartPatient.where(struct={"family": family, "_count": "3", "_total": "accurate"})
    assert counted.perform(smart.server).total == 7
    everything = list(search.perform_resources_iter(smart.server))  # follows next links
    assert sorted(p.id for p in everything) == sorted(created_ids)


def test_fhirclient_transaction(server):
    smart = smart_client.FHIRClient(
        settings={"app_id": "zorgbrug-conformance", "api_base": server.fhir + "/"}
    )
    smart.server.session.headers["Authorization"] = f"Bearer {token(server)}"
    bsn = unique_bsn()
    bundle = SmartBundle(
        {
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:6d7b0c43-4b0f-4b0e-9a7f-1b2e3c4d5e6f",
                    "resource": {
                        "resourceType": "Patient",
                        "identifier": [{"system": BSN, "value": bsn}],
                    },
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "Hb"},
                        "subject": {"reference": "urn:uuid:6d7b0c43-4b0f-4b0e-9a7f-1b2e3c4d5e6f"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
    )
    response = smart.server.post_json("", bundle.as_json()).json()
    assert response["type"] == "transaction-response"
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201", "201"]


def test_fhirpy_sync_crud_search_and_paging(server):
    client = SyncFHIRClient(
        server.fhir,
        authorization=f"Bearer {token(server)}",
        extra_headers={"Accept": "application/fhir+json"},
    )
    family = f"Fhirpy{uuid.uuid4().hex[:8]}"
    for i in range(5):
        client.resource("Patient", name=[{"family": family, "given": [str(i)]}]).save()
    search = client.resources("Patient").search(family=family).limit(2)
    found = search.fetch_all()
    assert len(found) == 5
    assert search.count() == 5

    patient = found[0]
    patient["gender"] = "other"
    patient.save()
    again = client.reference("Patient", patient.id).to_resource()
    assert again["gender"] == "other"
    assert again["meta"]["versionId"] == "2"
    patient.delete()
    assert client.resources("Patient").search(family=family).count() == 4


def test_fhirpy_async_transaction_bundle(server):
    access = token(server)

    async def run():
        client = AsyncFHIRClient(
            server.fhir,
            authorization=f"Bearer {access}",
            extra_headers={"Accept": "application/fhir+json"},
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:11111111-2222-3333-4444-555555555555",
                    "resource": {"resourceType": "Organization", "name": "Fhirpy Hospital"},
                    "request": {"method": "POST", "url": "Organization"},
                }
            ],
        }
        response = await client.execute("", method="post", data=bundle)
        return response

    response = asyncio.run(run())
    assert response["type"] == "transaction-response"
    assert response["entry"][0]["response"]["status"].startswith("201")
