"""Search: parameters by kind, modifiers and prefixes, chains, paging, sort, include, summary."""

from __future__ import annotations

import concurrent.futures

import pytest
from harness import unique, unique_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
LOINC = "http://loinc.org"


def make_patient(fhir, family, *, given="Anna", gender="female", birth="1956-03-14", bsn=None):
    body = {
        "resourceType": "Patient",
        "name": [{"family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth,
    }
    if bsn:
        body["identifier"] = [{"system": BSN, "value": bsn}]
    response = fhir.post("/Patient", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def make_observation(fhir, patient_id, code, when, status="final"):
    body = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when,
    }
    response = fhir.post("/Observation", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def ids(bundle):
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def test_string_search_is_prefix_case_and_accent_insensitive(fhir):
    tag = unique()
    p = make_patient(fhir, f"Müller{tag}")
    assert p["id"] in ids(fhir.get("/Patient", params={"family": f"muller{tag}"[:9]}).json())
    assert p["id"] in ids(fhir.get("/Patient", params={"name": f"MÜLLER{tag}"}).json())
    assert p["id"] in ids(fhir.get("/Patient", params={"family:exact": f"Müller{tag}"}).json())
    assert not ids(fhir.get("/Patient", params={"family:exact": f"müller{tag}"}).json())
    assert p["id"] in ids(fhir.get("/Patient", params={"family:contains": tag}).json())


def test_token_search_with_system_and_not(fhir):
    bsn = unique_bsn()
    p = make_patient(fhir, "Token", bsn=bsn)
    assert ids(fhir.get("/Patient", params={"identifier": f"{BSN}|{bsn}"}).json()) == {p["id"]}
    assert ids(fhir.get("/Patient", params={"identifier": bsn}).json()) == {p["id"]}
    assert not ids(fhir.get("/Patient", params={"identifier": f"http://other|{bsn}"}).json())
    assert not ids(fhir.get("/Patient", params={"identifier": f"|{bsn}"}).json())
    male = make_patient(fhir, f"Not{bsn}", gender="male")
    female = make_patient(fhir, f"Not{bsn}", gender="female")
    found = ids(fhir.get("/Patient", params={"family": f"Not{bsn}", "gender:not": "male"}).json())
    assert found == {female["id"]}
    assert male["id"] not in found


def test_missing_modifier(fhir):
    tag = unique()
    with_birth = make_patient(fhir, f"Miss{tag}")
    body = {"resourceType": "Patient", "name": [{"family": f"Miss{tag}"}]}
    without = fhir.post("/Patient", json=body).json()
    found = ids(
        fhir.get("/Patient", params={"family": f"Miss{tag}", "birthdate:missing": "true"}).json()
    )
    assert found == {without["id"]}
    found = ids(
        fhir.get("/Patient", params={"family": f"Miss{tag}", "birthdate:missing": "false"}).json()
    )
    assert found == {with_birth["id"]}


def test_date_prefixes(fhir):
    tag = unique()
    old = make_patient(fhir, f"Date{tag}", birth="1940-06-01")
    mid = make_patient(fhir, f"Date{tag}", birth="1970")
    new = make_patient(fhir, f"Date{tag}", birth="2001-02-03")

    def search(value):
        return ids(fhir.get("/Patient", params={"family": f"Date{tag}", "birthdate": value}).json())

    assert search("1970") == {mid["id"]}
    assert search("eq1970") == {mid["id"]}
    assert search("1970-05-05") == set()  # the year 1970 is not inside one day
    assert search("lt1970-01-01") == {old["id"]}
    assert search("gt1970-12-31") == {new["id"]}
    assert search("ge1970-01-01") == {mid["id"], new["id"]}
    assert search("le1970-12-31") == {old["id"], mid["id"]}
    assert search("ne1970") == {old["id"], new["id"]}
    assert search("sa1970") == {new["id"]}
    assert search("eb1970") == {old["id"]}


def test_a_date_covers_its_precision_to_the_ends_of_the_calendar(fhir):
    """A search value covers what it states: ``.123`` the whole millisecond (a stored value in
    nanoseconds falls inside it), and the year 9999 is a date like any other. An offset beyond
    FHIR's -12:00..+14:00 or digits other than ASCII are a 400, not a search for nothing."""
    p = make_patient(fhir, "Precise", bsn=unique_bsn())
    fine = make_observation(fhir, p["id"], "718-7", "2025-03-04T00:00:00.123456789Z")
    last = make_observation(fhir, p["id"], "718-7", "9999-12-31T23:59:59Z")

    def search(value):
        answer = fhir.get("/Observation", params={"subject": f"Patient/{p['id']}", "date": value})
        assert answer.status_code == 200, (value, answer.text)
        return ids(answer.json())

    assert search("2025-03-04T00:00:00.123Z") == {fine["id"]}
    assert search("2025-03-04T00:00:00.124Z") == set()
    assert search("2025-03-04T00:00:00.123456Z") == {fine["id"]}
    assert search("9999-12-31") == {last["id"]}
    assert search("ge9000") == {last["id"]}
    assert search("gt9999-12-31T23:59:58Z") == {last["id"]}
    for bad in (
        "2025-03-04T10:00:00+99:99",
        "2025-03-04T10:00:00+15:00",
        "\u0662\u0660\u0662\u0665",
    ):
        answer = fhir.get("/Observation", params={"subject": f"Patient/{p['id']}", "date": bad})
        assert answer.status_code == 400, (bad, answer.text)
        assert answer.json()["resourceType"] == "OperationOutcome"


def test_reference_search_by_id_type_id_and_chain(fhir):
    bsn = unique_bsn()
    p = make_patient(fhir, "Ref", bsn=bsn)
    obs = make_observation(fhir, p["id"], "718-7", "2026-11-01T10:00:00Z")
    for params in (
        {"subject": f"Patient/{p['id']}"},
        {"patient": p["id"]},
        {"subject:Patient": p["id"]},
        {"patient.identifier": f"{BSN}|{bsn}"},
        {"subject:Patient.identifier": bsn},
    ):
        assert ids(fhir.get("/Observation", params=params).json()) == {obs["id"]}, params
    assert not ids(fhir.get("/Observation", params={"patient.identifier": f"{BSN}|x{bsn}"}).json())


def test_observation_code_date_status(fhir):
    p = make_patient(fhir, "Obs")
    a = make_observation(fhir, p["id"], "718-7", "2026-11-01T10:00:00+01:00")
    b = make_observation(fhir, p["id"], "2345-7", "2026-11-05T10:00:00Z", status="preliminary")
    base = {"patient": p["id"]}
    assert ids(fhir.get("/Observation", params=base | {"code": f"{LOINC}|718-7"}).json()) == {
        a["id"]
    }
    assert ids(fhir.get("/Observation", params=base | {"code": "718-7,2345-7"}).json()) == {
        a["id"],
        b["id"],
    }
    assert ids(fhir.get("/Observation", params=base | {"date": "ge2026-11-03"}).json()) == {b["id"]}
    assert ids(fhir.get("/Observation", params=base | {"status": "final"}).json()) == {a["id"]}
    # two occurrences of a parameter are ANDed
    both = [("patient", p["id"]), ("date", "ge2026-11-01"), ("date", "lt2026-11-02")]
    assert ids(fhir.get("/Observation", params=both).json()) == {a["id"]}


def test_several_selective_criteria_match_in_any_order_with_paging_and_totals(fhir):
    # One starts the search from its index rows, the others are checked per candidate: the
    # answer must not depend on which, nor on the order the query names them in.
    tag = unique()
    patients = [make_patient(fhir, f"Sel{tag}", bsn=None) for _ in range(2)]
    mine = [make_observation(fhir, patients[0]["id"], "718-7", f"2026-11-0{d}") for d in (1, 2, 3)]
    make_observation(fhir, patients[0]["id"], "2345-7", "2026-11-04")
    make_observation(fhir, patients[1]["id"], "718-7", "2026-11-05")
    wanted = {o["id"] for o in mine}
    for params in (
        [("patient", patients[0]["id"]), ("code", f"{LOINC}|718-7")],
        [("code", f"{LOINC}|718-7"), ("patient", patients[0]["id"])],
        [("code", "718-7"), ("subject", f"Patient/{patients[0]['id']}"), ("status", "final")],
    ):
        first = fhir.get("/Observation", params=[*params, ("_count", "2")]).json()
        second = fhir.get(next(x["url"] for x in first["link"] if x["relation"] == "next")).json()
        assert ids(first) | ids(second) == wanted, params
        counted = fhir.get("/Observation", params=[*params, ("_total", "accurate")]).json()
        assert counted["total"] == 3 and ids(counted) == wanted, params
    names = {"family": f"Sel{tag}", "_id": patients[1]["id"]}
    assert ids(fhir.get("/Patient", params=names).json()) == {patients[1]["id"]}


def test_counts_take_each_match_once_by_its_current_values_and_only_the_visible_ones(server, fhir):
    """``_total=accurate`` and ``_summary=count`` judge the matches from their index rows: a
    resource two of whose values match counts once, an updated one by its new values, a deleted
    one not at all, another organisation's not without consent; with a sort key, past the last
    page, and with a chain driving, they count what the pages hold."""
    tag = unique()
    family = f"Cnt{tag}"

    def patient(names, birth):
        body = {
            "resourceType": "Patient",
            "name": [{"family": f"{family}{n}"} for n in names],
            "birthDate": birth,
        }
        response = fhir.post("/Patient", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    twice, old, moved, deleted, kept = (
        patient(["A", "B"], "1970-01-01"),
        patient(["C"], "1940-01-01"),
        patient(["D"], "1980-01-01"),
        patient(["E"], "1990-01-01"),
        patient(["F"], "1960-01-01"),
    )
    elsewhere = {"resourceType": "Patient", "name": [{"family": f"{family}Z"}]}
    with server.client(server.hospital("90000777", "Other Count Hospital")) as other:
        assert other.post("/Patient", json=elsewhere).status_code == 201
    renamed = {**moved, "name": [{"family": f"Not{tag}"}]}
    assert fhir.put(f"/Patient/{moved['id']}", json=renamed).status_code == 200
    observations = {
        p["id"]: make_observation(fhir, p["id"], "718-7", "2026-01-01")
        for p in (twice, deleted, kept)
    }
    assert fhir.delete(f"/Patient/{deleted['id']}").status_code in (200, 204)

    def counted(res_type, params):
        page = fhir.get(f"/{res_type}", params=[*params, ("_total", "accurate")])
        assert page.status_code == 200, page.text
        summary = fhir.get(f"/{res_type}", params=[*params, ("_summary", "count")]).json()
        past = [*params, ("_count", "1"), ("_offset", "9"), ("_total", "accurate")]
        beyond = fhir.get(f"/{res_type}", params=past).json()
        assert page.json()["total"] == summary["total"] == beyond["total"], params
        return page.json()

    adults = [("family", family), ("birthdate", "ge1950")]
    found = counted("Patient", adults)
    assert found["total"] == 2 and ids(found) == {twice["id"], kept["id"]}
    everyone = counted("Patient", [("family", family)])  # the one born before 1950 too
    assert everyone["total"] == 3 and old["id"] in ids(everyone)
    ordered = counted("Patient", [*adults, ("_sort", "-family"), ("_count", "1")])
    assert ordered["total"] == 2
    assert [e["resource"]["id"] for e in ordered["entry"]] == [kept["id"]]  # F after B
    chained = counted("Observation", [("subject:Patient.family", family)])
    assert chained["total"] == 2
    assert ids(chained) == {observations[twice["id"]]["id"], observations[kept["id"]]["id"]}


def test_id_and_last_updated(fhir):
    p = make_patient(fhir, "Ids")
    assert ids(fhir.get("/Patient", params={"_id": p["id"]}).json()) == {p["id"]}
    stamp = p["meta"]["lastUpdated"]
    assert p["id"] in ids(
        fhir.get("/Patient", params={"_id": p["id"], "_lastUpdated": f"ge{stamp[:10]}"}).json()
    )
    assert not ids(
        fhir.get("/Patient", params={"_id": p["id"], "_lastUpdated": "lt2000-01-01"}).json()
    )


def test_an_update_replaces_every_kind_of_index_row_and_a_delete_leaves_no_match(fhir):
    """An update is found by its new values only (string, token, date, reference), and a
    deleted resource by none: on PostgreSQL one statement writes the row, its version and
    its index rows, and replaces the old index rows."""
    tag, old_bsn, new_bsn = unique(), unique_bsn(), unique_bsn()
    p = make_patient(fhir, f"Before{tag}", bsn=old_bsn, birth="1950-01-01")
    other = make_patient(fhir, f"Other{tag}")
    obs = make_observation(fhir, p["id"], "718-7", "2020-01-01")
    updated = {
        **{k: v for k, v in p.items() if k != "meta"},
        "name": [{"family": f"After{tag}", "given": ["Anna"]}],
        "identifier": [{"system": BSN, "value": new_bsn}],
        "birthDate": "1960-06-06",
    }
    assert fhir.put(f"/Patient/{p['id']}", json=updated).status_code == 200
    moved = {**{k: v for k, v in obs.items() if k != "meta"}}
    moved["subject"] = {"reference": f"Patient/{other['id']}"}
    moved["code"] = {"coding": [{"system": LOINC, "code": "2345-7"}]}
    assert fhir.put(f"/Observation/{obs['id']}", json=moved).status_code == 200

    def found(res_type, **params):
        response = fhir.get(f"/{res_type}", params=params)
        assert response.status_code == 200, response.text
        return ids(response.json())

    assert found("Patient", family=f"Before{tag}") == set()
    assert found("Patient", family=f"After{tag}") == {p["id"]}
    assert found("Patient", identifier=f"{BSN}|{old_bsn}") == set()
    assert found("Patient", identifier=f"{BSN}|{new_bsn}") == {p["id"]}
    assert found("Patient", family=f"After{tag}", birthdate="1950-01-01") == set()
    assert found("Patient", family=f"After{tag}", birthdate="1960-06-06") == {p["id"]}
    assert found("Observation", subject=f"Patient/{p['id']}") == set()
    assert found("Observation", subject=f"Patient/{other['id']}", code=f"{LOINC}|2345-7") == {
        obs["id"]
    }
    assert found("Observation", subject=f"Patient/{other['id']}", code=f"{LOINC}|718-7") == set()
    history = fhir.get(f"/Patient/{p['id']}/_history").json()
    assert [e["resource"]["name"][0]["family"] for e in history["entry"]] == [
        f"After{tag}",
        f"Before{tag}",
    ]

    assert fhir.delete(f"/Patient/{p['id']}").status_code in (200, 204)
    assert found("Patient", family=f"After{tag}") == set()
    assert found("Patient", identifier=f"{BSN}|{new_bsn}") == set()
    assert fhir.get(f"/Patient/{p['id']}").status_code == 410


@pytest.mark.parametrize("total", [None, "accurate"])
def test_paging_links_cover_every_match_once_even_under_writes(server, fhir, total):
    tag = unique()
    expected = {make_patient(fhir, f"Page{tag}", given=str(i))["id"] for i in range(25)}

    def writer(n):
        with server.client() as client:
            make_patient(client, f"Page{tag}", given=f"late{n}")

    seen: list[str] = []
    url = "/Patient"
    params = {"family": f"Page{tag}", "_count": "7"} | ({"_total": total} if total else {})
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        page_number = 0
        while url:
            bundle = fhir.get(url, params=params).json()
            if page_number == 0:
                assert bundle.get("total") == (25 if total else None)
                list(pool.map(writer, range(5)))  # new matches arrive while we page
            seen.extend(e["resource"]["id"] for e in bundle.get("entry", []))
            nxt = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
            url, params = (nxt[0], None) if nxt else (None, None)
            page_number += 1
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == expected
    assert page_number == 4


# (_count, _offset): entries, then the total without _total (None: not stated), for 5 matches.
PAGE_SHAPES = {
    ("2", None): (2, None),  # a full first page: more follow, uncounted
    ("2", "4"): (1, 5),  # the short last page holds the last match
    ("3", "2"): (3, 5),  # a full last page: nothing beyond it
    ("2", "5"): (0, None),  # just past the end: an empty page does not tell
    ("2", "9"): (0, None),  # far past it
    ("0", None): (0, 5),  # only the total: counted
    ("9", None): (5, 5),  # everything on one page
}


def test_every_page_states_the_accurate_total_also_a_last_one_an_empty_one_and_count_zero(fhir):
    """With _total=accurate each page shape states the number of matches."""
    tag = unique()
    for i in range(5):
        make_patient(fhir, f"Tot{tag}", given=str(i))
    for (count, offset), (entries, _) in PAGE_SHAPES.items():
        params = {"family": f"Tot{tag}", "_count": count, "_total": "accurate"}
        bundle = fhir.get("/Patient", params=params | ({"_offset": offset} if offset else {}))
        assert (bundle.json()["total"], len(bundle.json().get("entry", []))) == (5, entries)
    nobody = fhir.get("/Patient", params={"family": f"Nobody{tag}", "_total": "accurate"}).json()
    assert (nobody["total"], nobody.get("entry", [])) == (0, [])


def test_without_total_accurate_a_total_is_stated_when_the_page_holds_the_last_match(fhir):
    """Counting every match of a broad search costs more than its page: by default (and with
    _total=estimate) the total is stated when the page shows it, and never with _total=none;
    the next link is there exactly when more matches follow."""
    tag = unique()
    for i in range(5):
        make_patient(fhir, f"Est{tag}", given=str(i))
    for mode in (None, "estimate", "none"):
        for (count, offset), (entries, total) in PAGE_SHAPES.items():
            params = {"family": f"Est{tag}", "_count": count}
            params |= ({"_offset": offset} if offset else {}) | ({"_total": mode} if mode else {})
            bundle = fhir.get("/Patient", params=params).json()
            shown = (bundle.get("total"), len(bundle.get("entry", [])))
            assert shown == (None if mode == "none" else total, entries), params
            more = int(count) > 0 and int(offset or 0) + int(count) < 5
            nexts = [link for link in bundle["link"] if link["relation"] == "next"]
            assert bool(nexts) == more, params
    nobody = fhir.get("/Patient", params={"family": f"Nobody{tag}"}).json()
    assert (nobody["total"], nobody.get("entry", [])) == (0, [])


def test_an_unknown_total_mode_is_a_400(fhir):
    response = fhir.get("/Patient", params={"family": "x", "_total": "exact"})
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "_total=exact" in outcome["issue"][0]["diagnostics"]


def test_previous_link_returns_the_earlier_page(fhir):
    tag = unique()
    for i in range(6):
        make_patient(fhir, f"Prev{tag}", given=str(i))
    first = fhir.get("/Patient", params={"family": f"Prev{tag}", "_count": "3"}).json()
    second = fhir.get(next(lk["url"] for lk in first["link"] if lk["relation"] == "next")).json()
    back = fhir.get(next(lk["url"] for lk in second["link"] if lk["relation"] == "previous")).json()
    assert ids(back) == ids(first)
    assert not ids(back) & ids(second)


def test_sort(fhir):
    tag = unique()
    for family in ("Cc", "Aa", "Bb"):
        make_patient(fhir, f"{family}{tag}", given=f"Sort{tag}")
    asc = fhir.get("/Patient", params={"given": f"Sort{tag}", "_sort": "family"}).json()
    desc = fhir.get("/Patient", params={"given": f"Sort{tag}", "_sort": "-family"}).json()
    order = [e["resource"]["name"][0]["family"][:2] for e in asc["entry"]]
    assert order == ["Aa", "Bb", "Cc"]
    assert [e["resource"]["name"][0]["family"][:2] for e in desc["entry"]] == ["Cc", "Bb", "Aa"]
    by_update = fhir.get(
        "/Patient", params={"given": f"Sort{tag}", "_sort": "-_lastUpdated"}
    ).json()
    assert by_update["entry"][0]["resource"]["name"][0]["family"][:2] == "Bb"


def test_include_and_revinclude(fhir):
    p = make_patient(fhir, "Incl")
    obs = make_observation(fhir, p["id"], "718-7", "2026-11-01")
    bundle = fhir.get(
        "/Observation", params={"_id": obs["id"], "_include": "Observation:subject"}
    ).json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    assert bundle["total"] == 1
    rev = fhir.get("/Patient", params={"_id": p["id"], "_revinclude": "Observation:subject"}).json()
    assert {e["resource"]["id"] for e in rev["entry"]} == {p["id"], obs["id"]}


def test_summary_count_and_elements(fhir):
    tag = unique()
    for _ in range(3):
        make_patient(fhir, f"Sum{tag}")
    count = fhir.get("/Patient", params={"family": f"Sum{tag}", "_summary": "count"}).json()
    assert count["total"] == 3
    assert "entry" not in count
    subset = fhir.get("/Patient", params={"family": f"Sum{tag}", "_elements": "gender"}).json()
    resource = subset["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "gender"}
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


def test_post_search_equals_get_search(fhir):
    tag = unique()
    p = make_patient(fhir, f"Post{tag}")
    response = fhir.post("/Patient/_search", data={"family": f"Post{tag}"})
    assert response.status_code == 200
    assert ids(response.json()) == {p["id"]}


def test_document_reference_iti67_parameters(fhir):
    p = make_patient(fhir, "Doc", bsn=unique_bsn())
    doc = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.3.{unique()}"},
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "18842-5"}]},
        "category": [{"coding": [{"system": LOINC, "code": "11488-4"}]}],
        "subject": {"reference": f"Patient/{p['id']}"},
        "date": "2026-11-20T12:00:00Z",
        "securityLabel": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                        "code": "N",
                    }
                ]
            }
        ],
        "content": [
            {
                "attachment": {"contentType": "application/pdf", "url": "Binary/x"},
                "format": {
                    "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
                    "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
                },
            }
        ],
        "context": {
            "period": {"start": "2026-11-01", "end": "2026-11-10"},
            "facilityType": {"coding": [{"system": "http://snomed.info/sct", "code": "22232009"}]},
            "practiceSetting": {
                "coding": [{"system": "http://snomed.info/sct", "code": "394802001"}]
            },
        },
    }
    created = fhir.post("/DocumentReference", json=doc).json()
    base = {"patient": p["id"], "status": "current"}
    for extra in (
        {},
        {"type": "18842-5"},
        {"category": "11488-4"},
        {"date": "ge2026-11-20"},
        {"period": "ge2026-11-05"},
        {"facility": "22232009"},
        {"setting": "394802001"},
        {"security-label": "N"},
        {"format": "urn:ihe:iti:xds:2017:mimeTypeSufficient"},
        {"identifier": doc["masterIdentifier"]["value"]},
        {"contenttype": "application/pdf"},
    ):
        assert ids(fhir.get("/DocumentReference", params=base | extra).json()) == {created["id"]}, (
            extra
        )
    assert not ids(fhir.get("/DocumentReference", params=base | {"type": "11111-1"}).json())


def test_chain_without_type_modifier_tries_every_target_type_that_knows_the_parameter(fhir):
    tag = unique()
    org = fhir.post(
        "/Organization", json={"resourceType": "Organization", "name": f"Chain{tag} Hospital"}
    ).json()
    doc_by_org = fhir.post(
        "/DocumentReference",
        json={
            "resourceType": "DocumentReference",
            "status": "current",
            "author": [{"reference": f"Organization/{org['id']}"}],
            "content": [{"attachment": {"url": "Binary/a"}}],
        },
    ).json()
    person = fhir.post(
        "/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": f"Chain{tag}"}]}
    ).json()
    doc_by_person = fhir.post(
        "/DocumentReference",
        json={
            "resourceType": "DocumentReference",
            "status": "current",
            "author": [{"reference": f"Practitioner/{person['id']}"}],
            "content": [{"attachment": {"url": "Binary/b"}}],
        },
    ).json()
    both = ids(fhir.get("/DocumentReference", params={"author.name": f"Chain{tag}"}).json())
    assert both == {doc_by_org["id"], doc_by_person["id"]}
    only_org = fhir.get("/DocumentReference", params={"author:Organization.name": f"Chain{tag}"})
    assert ids(only_org.json()) == {doc_by_org["id"]}
    strict = fhir.get(
        "/Observation", params={"subject.colour": "x"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        {"code:text": "Hemoglobin"},
        {"status:below": "final"},
        {"status.name": "x"},
        {"subject.organization.name": "x"},
    ],
    ids=["modifier", "modifier on a code", "chain on a token", "two levels of chaining"],
)
def test_a_known_parameter_asked_in_an_unsupported_way_is_refused_also_when_lenient(fhir, query):
    """Ignoring it would return more than was asked for; an unknown parameter is ignored."""
    answer = fhir.get("/Observation", params=query)
    assert answer.status_code == 400, answer.text
    assert answer.json()["issue"][0]["code"] == "not-supported"
    assert fhir.get("/Observation", params={"bogus": "1"}).status_code == 200
