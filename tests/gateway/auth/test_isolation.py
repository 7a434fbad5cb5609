"""Per-organisation isolation and scope enforcement on every read path, over real HTTP."""

from __future__ import annotations

import pytest
from harness import unique, unique_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
SHARED_BSN = "999911120"  # the same patient is known to all three hospitals


@pytest.fixture(scope="module")
def network(server):
    """Three hospitals, each with its own copy of one patient and an observation about her."""
    hospitals = {}
    for number in (1, 2, 3):
        hospital = server.hospital(f"9000020{number}", f"Isolation Hospital {number}")
        with server.client(hospital) as fhir:
            patient = fhir.post(
                "/Patient",
                json={
                    "resourceType": "Patient",
                    "identifier": [{"system": BSN, "value": SHARED_BSN}],
                    "name": [{"family": f"Isolated{number}"}],
                },
            ).json()
            fhir.put(f"/Patient/{patient['id']}", json=patient | {"gender": "female"})
            observation = fhir.post(
                "/Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Hb"},
                    "subject": {"reference": f"Patient/{patient['id']}"},
                },
            ).json()
        hospitals[number] = (hospital, patient["id"], observation["id"])
    return hospitals


def entry_ids(bundle):
    return {e["resource"]["id"] for e in bundle.get("entry", []) if "resource" in e}


def test_every_read_path_shows_only_the_own_organisations_data(server, network):
    for number, (hospital, patient_id, observation_id) in network.items():
        own = {patient_id, observation_id}
        others = {rid for n, (_, p, o) in network.items() if n != number for rid in (p, o)}
        with server.client(hospital) as fhir:
            for other in others:
                for path in (
                    f"/Patient/{other}",
                    f"/Observation/{other}",
                    f"/Patient/{other}/_history/1",
                    f"/Patient/{other}/_history",
                    f"/Observation/{other}/_history/1",
                ):
                    response = fhir.get(path)
                    assert response.status_code == 404, (path, response.text)
            by_bsn = fhir.get("/Patient", params={"identifier": f"{BSN}|{SHARED_BSN}"}).json()
            assert entry_ids(by_bsn) == {patient_id}
            assert by_bsn["total"] == 1
            count = fhir.get("/Patient", params={"identifier": SHARED_BSN, "_summary": "count"})
            assert count.json()["total"] == 1
            chained = fhir.get(
                "/Observation",
                params={"patient.identifier": SHARED_BSN, "_include": "Observation:subject"},
            ).json()
            assert entry_ids(chained) == own
            reverse = fhir.get(
                "/Patient", params={"identifier": SHARED_BSN, "_revinclude": "Observation:subject"}
            ).json()
            assert entry_ids(reverse) == own
            everything = fhir.get("/Observation", params={"_count": "1"}).json()
            assert everything["total"] == 1
            assert not any(link["relation"] == "next" for link in everything["link"])
            # Registered organisations form the network directory every member reads.
            directory = fhir.get("/Organization", params={"_count": "100"}).json()
            names = {e["resource"]["name"] for e in directory["entry"]}
            assert {f"Isolation Hospital {n}" for n in network} <= names
            directory_ids = entry_ids(directory)
            for path in ("/Patient/_history", "/_history"):
                history = fhir.get(path, params={"_count": "100"}).json()
                assert entry_ids(history) <= own | directory_ids, path
                assert patient_id in entry_ids(history), path
                assert history["total"] == len(history["entry"])
            batch = fhir.post(
                "",
                json={
                    "resourceType": "Bundle",
                    "type": "batch",
                    "entry": [
                        {"request": {"method": "GET", "url": f"Patient/{other}"}}
                        for other in others
                    ]
                    + [
                        {
                            "request": {
                                "method": "GET",
                                "url": f"Observation?patient.identifier={SHARED_BSN}",
                            }
                        }
                    ],
                },
            )
            statuses = [e["response"]["status"][:3] for e in batch.json()["entry"]]
            assert statuses == ["404"] * len(others) + ["200"]
            assert entry_ids(batch.json()["entry"][-1]["resource"]) == {observation_id}
            transaction = fhir.post(
                "",
                json={
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {"request": {"method": "GET", "url": f"Patient/{next(iter(others))}"}}
                    ],
                },
            )
            assert transaction.status_code == 404


def test_an_organisation_a_hospital_records_itself_stays_private(server, network):
    (first, _, _), (second, _, _) = network[1], network[2]
    with server.client(first) as fhir:
        practice = fhir.post(
            "/Organization", json={"resourceType": "Organization", "name": f"GP {unique()}"}
        ).json()
    with server.client(second) as fhir:
        assert fhir.get(f"/Organization/{practice['id']}").status_code == 404
        found = fhir.get("/Organization", params={"name": practice["name"]}).json()
        assert found["total"] == 0


def test_others_resources_cannot_be_changed_or_deleted(server, network):
    hospital, _, _ = network[1]
    _, victim_patient, victim_observation = network[2]
    with server.client(hospital) as fhir:
        takeover = fhir.put(
            f"/Patient/{victim_patient}",
            json={"resourceType": "Patient", "id": victim_patient, "name": [{"family": "Hijack"}]},
        )
        assert takeover.status_code == 409
        assert fhir.delete(f"/Observation/{victim_observation}").status_code == 404
    owner = network[2][0]
    with server.client(owner) as fhir:
        assert fhir.get(f"/Patient/{victim_patient}").json()["name"][0]["family"] == "Isolated2"
        assert fhir.get(f"/Observation/{victim_observation}").status_code == 200


def test_conditional_create_does_not_match_another_organisations_resource(server, network):
    hospital, _, _ = network[3]
    with server.client(hospital) as fhir:
        bsn = unique_bsn()
        body = {"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]}
        condition = {"If-None-Exist": f"identifier={BSN}|{bsn}"}
        with server.client(network[1][0]) as other:
            assert other.post("/Patient", json=body, headers=condition).status_code == 201
        assert fhir.post("/Patient", json=body, headers=condition).status_code == 201
        assert fhir.post("/Patient", json=body, headers=condition).status_code == 200


@pytest.mark.parametrize(
    ("scope", "allowed", "forbidden"),
    [
        (
            "system/Patient.read",
            ["read Patient", "search Patient"],
            ["create Patient", "read Observation", "search Observation"],
        ),
        (
            "system/Patient.rs",
            ["read Patient", "search Patient"],
            ["create Patient", "delete Patient"],
        ),
        (
            "system/Patient.c system/Patient.r",
            ["create Patient", "read Patient"],
            ["search Patient", "update Patient"],
        ),
        (
            "system/*.write",
            ["create Observation", "update Patient", "delete Patient"],
            ["read Patient", "search Observation"],
        ),
    ],
)
def test_scopes_are_enforced_per_interaction(server, network, scope, allowed, forbidden):
    hospital = server.hospital(f"900003{abs(hash(scope)) % 100:02d}", "Scoped", scopes=scope)
    with server.client(scope="system/*.cruds") as admin:  # the default hospital sets the stage
        admin.get("/Patient")
    with server.client(hospital, scope=scope) as fhir:
        patient_id = unique()

        def attempt(action):
            verb, res_type = action.split()
            if verb == "create":
                return fhir.post(
                    f"/{res_type}",
                    json={"resourceType": res_type, "status": "final", "code": {"text": "x"}}
                    if res_type == "Observation"
                    else {"resourceType": res_type},
                )
            if verb == "read":
                return fhir.get(f"/{res_type}/{patient_id}")
            if verb == "search":
                return fhir.get(f"/{res_type}")
            if verb == "update":
                return fhir.put(
                    f"/{res_type}/{patient_id}", json={"resourceType": res_type, "id": patient_id}
                )
            return fhir.delete(f"/{res_type}/{patient_id}")

        for action in allowed:
            assert attempt(action).status_code != 403, (scope, action)
        for action in forbidden:
            response = attempt(action)
            assert response.status_code == 403, (scope, action, response.text)
            assert response.json()["issue"][0]["code"] == "forbidden"
