"""FHIR REST interactions over real HTTP: create, read, vread, update, delete, history, XML."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid

from harness import load_example, unique, unique_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"


def patient(family: str = "Jansen", **extra):
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1956-03-14",
        **extra,
    }


def test_server_assigned_ids_follow_the_order_of_creation(fhir):
    # Time-ordered ids (UUID version 7) land at the end of the store's unique index.
    ids = []
    for _ in range(12):
        response = fhir.post("/Patient", json=patient())
        assert response.status_code == 201
        ids.append(response.json()["id"])
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_create_returns_location_etag_and_last_modified(fhir):
    response = fhir.post("/Patient", json=patient())
    assert response.status_code == 201
    body = response.json()
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"].endswith(f"/fhir/Patient/{body['id']}/_history/1")
    assert response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert body["meta"]["versionId"] == "1"


def test_read_serves_exactly_the_stored_version(fhir):
    created = fhir.post("/Patient", json=patient()).json()
    read = fhir.get(f"/Patient/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert read.headers["ETag"] == 'W/"1"'


def test_update_creates_a_new_version_and_vread_keeps_the_old(fhir):
    created = fhir.post("/Patient", json=patient("Old")).json()
    changed = created | {"name": [{"family": "New"}]}
    updated = fhir.put(f"/Patient/{created['id']}", json=changed)
    assert updated.status_code == 200
    assert updated.headers["ETag"] == 'W/"2"'
    assert fhir.get(f"/Patient/{created['id']}/_history/1").json()["name"][0]["family"] == "Old"
    assert fhir.get(f"/Patient/{created['id']}/_history/2").json()["name"][0]["family"] == "New"
    assert fhir.get(f"/Patient/{created['id']}/_history/3").status_code == 404


def test_update_with_stale_if_match_is_412_and_changes_nothing(fhir):
    created = fhir.post("/Patient", json=patient()).json()
    url = f"/Patient/{created['id']}"
    first = fhir.put(url, json=created | {"gender": "male"}, headers={"If-Match": 'W/"1"'})
    assert first.status_code == 200
    stale = fhir.put(url, json=created | {"gender": "other"}, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"
    assert fhir.get(url).json()["gender"] == "male"


def test_update_of_unknown_id_creates_it_with_the_clients_id(fhir):
    res_id = f"client-{unique()}"
    response = fhir.put(f"/Patient/{res_id}", json=patient(id=res_id))
    assert response.status_code == 201
    assert fhir.get(f"/Patient/{res_id}").json()["id"] == res_id


def test_update_rejects_id_mismatch(fhir):
    response = fhir.put("/Patient/abc", json=patient(id="xyz"))
    assert response.status_code == 400
    assert "does not match" in response.json()["issue"][0]["diagnostics"]


def test_delete_is_versioned_and_then_410(fhir):
    created = fhir.post("/Patient", json=patient()).json()
    url = f"/Patient/{created['id']}"
    deleted = fhir.delete(url)
    assert deleted.status_code == 204
    assert deleted.headers["ETag"] == 'W/"2"'
    gone = fhir.get(url)
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert fhir.get(f"{url}/_history/1").status_code == 200
    history = fhir.get(f"{url}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]
    assert "resource" not in history["entry"][0]
    assert fhir.get("/Patient", params={"_id": created["id"]}).json()["total"] == 0


def test_delete_of_unknown_resource_is_404(fhir):
    assert fhir.delete(f"/Patient/{unique()}").status_code == 404


def test_conditional_create_returns_the_existing_match(fhir):
    bsn = unique_bsn()
    condition = f"identifier={BSN}|{bsn}"
    body = patient(identifier=[{"system": BSN, "value": bsn}])
    first = fhir.post("/Patient", json=body, headers={"If-None-Exist": condition})
    second = fhir.post("/Patient", json=body, headers={"If-None-Exist": condition})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_conditional_create_is_race_free_under_20_concurrent_requests(server):
    bsn = unique_bsn()
    condition = f"identifier={BSN}|{bsn}"
    body = patient(identifier=[{"system": BSN, "value": bsn}])

    def send(_):
        with server.client() as client:
            return client.post("/Patient", json=body, headers={"If-None-Exist": condition})

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, range(20)))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert sum(r.status_code == 201 for r in responses) == 1
    assert len({r.json()["id"] for r in responses}) == 1
    with server.client() as client:
        found = client.get("/Patient", params={"identifier": f"{BSN}|{bsn}"}).json()
    assert found["total"] == 1


def concurrently(count, send):
    """``send(n)`` for n in range(count), each on its own thread, started together."""
    barrier = threading.Barrier(count)

    def at_once(n):
        barrier.wait(timeout=30)
        return send(n)

    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(at_once, range(count)))


def test_conditional_update_is_race_free_under_10_concurrent_requests(server):
    """A conditional update that matches nothing creates (an EHR export sending one patient
    twice at once): ten at once store one. On PostgreSQL eight of them once created their
    own, and the last two answered 412 as the condition then matched several."""
    bsn = unique_bsn()
    body = patient(identifier=[{"system": BSN, "value": bsn}])
    with server.client() as client:
        client.get("/metadata")
        responses = concurrently(
            10, lambda _n: client.put("/Patient", params={"identifier": f"{BSN}|{bsn}"}, json=body)
        )
        found = client.get("/Patient", params={"identifier": f"{BSN}|{bsn}"}).json()
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert found["total"] == 1


def test_conditional_updates_in_transactions_are_race_free(server):
    """The same, as the conditional PUT entry of ten transaction Bundles sent at once."""
    bsn = unique_bsn()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": patient(identifier=[{"system": BSN, "value": bsn}]),
                "request": {"method": "PUT", "url": f"Patient?identifier={BSN}|{bsn}"},
            }
        ],
    }
    with server.client() as client:
        client.get("/metadata")
        responses = concurrently(10, lambda _n: client.post("", json=bundle))
        found = client.get("/Patient", params={"identifier": f"{BSN}|{bsn}"}).json()
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert found["total"] == 1


def test_conditional_create_with_several_matches_is_412(fhir):
    family = f"Twin{unique()}"
    fhir.post("/Patient", json=patient(family))
    fhir.post("/Patient", json=patient(family))
    response = fhir.post(
        "/Patient", json=patient(family), headers={"If-None-Exist": f"family:exact={family}"}
    )
    assert response.status_code == 412


def test_conditional_update_and_delete(fhir):
    bsn = unique_bsn()
    condition = f"identifier={BSN}|{bsn}"
    body = patient(identifier=[{"system": BSN, "value": bsn}])
    created = fhir.put(f"/Patient?{condition}", json=body)
    assert created.status_code == 201
    updated = fhir.put(f"/Patient?{condition}", json=body | {"gender": "male"})
    assert updated.status_code == 200
    assert updated.json()["id"] == created.json()["id"]
    assert fhir.delete(f"/Patient?{condition}").status_code == 204
    assert fhir.get(f"/Patient/{created.json()['id']}").status_code == 410


def test_type_and_system_history(fhir):
    created = fhir.post(
        "/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Bakker"}]}
    ).json()
    history = fhir.get("/Practitioner/_history", params={"_count": 5}).json()
    assert history["type"] == "history"
    assert history["entry"][0]["fullUrl"].endswith(f"/Practitioner/{created['id']}")
    everything = fhir.get("/_history", params={"_count": 1}).json()
    assert everything["total"] >= 1
    assert (
        any(link["relation"] == "next" for link in everything["link"]) or everything["total"] == 1
    )


def test_xml_in_and_out(fhir):
    xml = (
        '<Patient xmlns="http://hl7.org/fhir"><name><family value="Visser"/>'
        '<given value="Sanne"/></name><gender value="female"/>'
        '<birthDate value="1990-01-31"/></Patient>'
    )
    created = fhir.post(
        "/Patient",
        content=xml,
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert created.status_code == 201, created.text
    assert created.headers["Content-Type"].startswith("application/fhir+xml")
    assert b'<family value="Visser"/>' in created.content
    res_id = created.headers["Location"].split("/Patient/")[1].split("/")[0]
    as_json = fhir.get(f"/Patient/{res_id}").json()
    assert as_json["name"][0]["family"] == "Visser"
    as_xml = fhir.get(f"/Patient/{res_id}", params={"_format": "xml"})
    assert as_xml.headers["Content-Type"].startswith("application/fhir+xml")
    assert b'<birthDate value="1990-01-31"/>' in as_xml.content


def test_official_example_round_trips_through_xml(fhir):
    example = load_example("Observation/Observation-f001.json")
    created = fhir.post("/Observation", json=example).json()
    xml = fhir.get(f"/Observation/{created['id']}", headers={"Accept": "application/fhir+xml"})
    again = fhir.put(
        f"/Observation/{created['id']}",
        content=xml.content,
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert again.status_code == 200, again.text
    assert again.json()["valueQuantity"] == example["valueQuantity"]


def test_request_id_is_echoed_or_generated(fhir):
    given = fhir.get("/metadata", headers={"X-Request-Id": "abc-123"})
    assert given.headers["X-Request-Id"] == "abc-123"
    generated = fhir.get("/metadata")
    assert len(generated.headers["X-Request-Id"]) == 36


def test_prefer_return_minimal_sends_no_body(fhir):
    response = fhir.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["Location"]
