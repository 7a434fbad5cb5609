"""Transaction bundles are atomic and resolve urn:uuid references; batch entries stand alone."""

from __future__ import annotations

from harness import load_example, unique, unique_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"


def entry(full_url, resource, method="POST", url=None, **request):
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": method, "url": url or resource["resourceType"], **request},
    }


def test_transaction_resolves_urn_uuid_references(fhir):
    bsn = unique_bsn()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry(
                "urn:uuid:obs",
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Hb"},
                    "subject": {"reference": "urn:uuid:pat"},
                },
            ),
            entry(
                "urn:uuid:pat",
                {"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]},
            ),
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    obs_location, pat_location = (e["response"]["location"] for e in body["entry"])
    assert obs_location.startswith("Observation/") and pat_location.startswith("Patient/")
    patient_id = pat_location.split("/")[1]
    observation = fhir.get("/" + obs_location.split("/_history")[0]).json()
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    found = fhir.get("/Observation", params={"patient.identifier": f"{BSN}|{bsn}"}).json()
    assert found["total"] == 1


def test_one_bad_entry_stores_nothing(fhir):
    tag = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("urn:uuid:a", {"resourceType": "Patient", "name": [{"family": f"Atomic{tag}"}]}),
            entry("urn:uuid:b", {"resourceType": "Patient", "name": [{"family": f"Atomic{tag}"}]}),
            entry(
                "urn:uuid:c",
                {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}},
            ),
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 400
    outcome = response.json()
    assert "Bundle.entry[2]" in outcome["issue"][0]["diagnostics"]
    assert fhir.get("/Patient", params={"family": f"Atomic{tag}"}).json()["total"] == 0


def test_failure_during_execution_rolls_back_earlier_writes(fhir):
    tag = unique()
    existing = fhir.post(
        "/Patient", json={"resourceType": "Patient", "name": [{"family": "X"}]}
    ).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("urn:uuid:a", {"resourceType": "Patient", "name": [{"family": f"Roll{tag}"}]}),
            entry(
                None,
                existing | {"gender": "male"},
                "PUT",
                f"Patient/{existing['id']}",
                ifMatch='W/"7"',
            ),
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 412
    assert fhir.get("/Patient", params={"family": f"Roll{tag}"}).json()["total"] == 0
    assert "gender" not in fhir.get(f"/Patient/{existing['id']}").json()


def test_conditional_entries_in_a_transaction(fhir):
    bsn = unique_bsn()
    condition = f"identifier={BSN}|{bsn}"
    pat = {"resourceType": "Patient", "identifier": [{"system": BSN, "value": bsn}]}
    doc = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "urn:uuid:p"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry("urn:uuid:p", pat, ifNoneExist=condition), entry("urn:uuid:o", doc)],
    }
    first = fhir.post("", json=bundle).json()
    second = fhir.post("", json=bundle).json()
    assert first["entry"][0]["response"]["status"].startswith("201")
    assert second["entry"][0]["response"]["status"].startswith("200")
    assert first["entry"][0]["response"]["location"] == second["entry"][0]["response"]["location"]
    patient_id = first["entry"][0]["response"]["location"].split("/")[1]
    observations = fhir.get("/Observation", params={"subject": f"Patient/{patient_id}"}).json()
    assert observations["total"] == 2  # both point at the one patient


def test_official_transaction_example_with_prepared_state(fhir):
    """Bundle-bundle-transaction also calls ValueSet/$lookup, which this server does not offer:
    with that entry the whole transaction is refused; without it every entry succeeds."""
    bundle = load_example("Bundle/Bundle-bundle-transaction.json")
    refused = fhir.post("", json=bundle)
    assert refused.status_code == 400
    assert "$lookup" in refused.json()["issue"][0]["diagnostics"]
    assert fhir.get("/Patient/123").status_code == 404  # nothing of it was stored

    fhir.put("/Patient/123a", json={"resourceType": "Patient", "id": "123a"})
    fhir.put("/Patient/123a", json={"resourceType": "Patient", "id": "123a", "active": True})
    fhir.put("/Patient/234", json={"resourceType": "Patient", "id": "234"})
    fhir.put("/Patient/12334", json={"resourceType": "Patient", "id": "12334"})
    bundle["entry"] = [e for e in bundle["entry"] if "$" not in e["request"]["url"]]
    response = fhir.post("", json=bundle)
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"][:3] for e in response.json()["entry"]]
    assert statuses == ["201", "201", "201", "201", "200", "204", "204", "200", "200"]
    assert fhir.get("/Patient/234").status_code == 410
    assert fhir.get("/Patient/123").status_code == 200


def test_batch_entries_succeed_or_fail_independently(fhir):
    tag = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(None, {"resourceType": "Patient", "name": [{"family": f"Batch{tag}"}]}),
            entry(None, {"resourceType": "Patient", "gender": "bogus"}),
            {"request": {"method": "GET", "url": f"Patient?family=Batch{tag}"}},
            {"request": {"method": "GET", "url": f"Patient/{unique()}"}},
        ],
    }
    response = fhir.post("", json=bundle)
    assert response.status_code == 200
    results = response.json()["entry"]
    assert [r["response"]["status"][:3] for r in results] == ["201", "400", "200", "404"]
    assert results[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert results[2]["resource"]["total"] == 1


def test_a_batch_updates_conditionally_each_entry_on_its_own(fhir):
    bsn, family = unique_bsn(), f"Cond{unique()}"

    def patient(given):
        return {
            "resourceType": "Patient",
            "identifier": [{"system": BSN, "value": bsn}],
            "name": [{"family": family, "given": [given]}],
        }

    condition = f"Patient?identifier={BSN}|{bsn}"
    bad = {"resourceType": "Patient", "identifier": [{"system": BSN, "value": "999930001"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(None, patient("Eerst"), "PUT", condition),  # none matches: created
            entry(None, bad, "PUT", "Patient?identifier=999930001"),  # fails the elfproef
        ],
    }
    first = fhir.post("", json=bundle)
    assert first.status_code == 200, first.text
    created, refused = first.json()["entry"]
    assert created["response"]["status"].startswith("201")
    assert refused["response"]["status"].startswith("422")
    assert refused["response"]["outcome"]["resourceType"] == "OperationOutcome"
    bundle["entry"] = [entry(None, patient("Daarna"), "PUT", condition)]  # one matches: updated
    second = fhir.post("", json=bundle)
    assert second.status_code == 200, second.text
    (updated,) = second.json()["entry"]
    assert updated["response"]["status"].startswith("200")
    assert (
        updated["response"]["location"].split("/")[1]
        == created["response"]["location"].split("/")[1]
    )
    found = fhir.get("/Patient", params={"family": family}).json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["name"][0]["given"] == ["Daarna"]


def test_transaction_in_xml_gets_an_xml_response(fhir):
    tag = unique()
    xml = f"""<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>
      <entry><fullUrl value="urn:uuid:9b1f6a3c-0d2e-4f5a-8b7c-6d5e4f3a2b1c"/>
        <resource><Patient><name><family value="Xml{tag}"/></name></Patient></resource>
        <request><method value="POST"/><url value="Patient"/></request></entry>
      <entry><resource><Observation><status value="final"/><code><text value="Hb"/></code>
          <subject><reference value="urn:uuid:9b1f6a3c-0d2e-4f5a-8b7c-6d5e4f3a2b1c"/></subject>
        </Observation></resource>
        <request><method value="POST"/><url value="Observation"/></request></entry>
    </Bundle>"""
    response = fhir.post(
        "",
        content=xml.encode(),
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/fhir+xml")
    assert b'<type value="transaction-response"/>' in response.content
    found = fhir.get("/Observation", params={"subject.family": f"Xml{tag}"}).json()
    assert found["total"] == 1


def test_the_base_url_takes_bundles_with_or_without_a_trailing_slash(fhir):
    base = str(fhir.base_url).rstrip("/")
    for url in (base, base + "/"):
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": []}
        response = fhir.post(url, json=bundle)
        assert response.status_code == 200, (url, response.text)
        assert response.json()["type"] == "batch-response"
