"""The DPO's pages, through HTTP as a browser uses them: a partner's access to a patient shows in
the access report (as a page and as CSV) with its basis, only to the DPO of the organisation
concerned; the overview shows the chain, emergencies and agreements about to expire; forms are
CSRF-checked and a BSN never travels in a URL."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sys
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
from harness import (
    PERSON_PASSWORD,
    LiveServer,
    Settings,
    add_person,
    break_the_glass,
    patient_with_result,
    valid_bsns,
)

from gateway.audit.log import REPORT_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "consent"))
from consent_builders import consent_json, provision  # the consent package's own builders

HOLDER, PARTNER, UNRELATED, FAR = "90000721", "90000722", "90000723", "90000724"
REFUSED = "90000725"  # its clinician tries to read the result and is refused
BSNS = valid_bsns(999840000)
AMSTERDAM = ZoneInfo("Europe/Amsterdam")


# -- a browser's session -----------------------------------------------------------------------


class Browser:
    """One person's browser session on the UI. The UI's cookies are Secure, which httpx's cookie
    jar withholds over plain http, so the session cookie is carried by hand."""

    def __init__(self, server: LiveServer, username: str) -> None:
        self.base = server.url
        self.http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False)
        self.session = self._log_in(username)
        self.csrf = ""
        self.language = "nl"

    def _log_in(self, username: str) -> str:
        start = self.http.get("/ui/login")
        assert start.status_code == 303, start.text
        login_cookie = _cookie(start, "zb_login")
        authorize = urlsplit(start.headers["location"])
        fields = dict(parse_qsl(authorize.query)) | {
            "username": username,
            "password": PERSON_PASSWORD,
        }
        answer = self.http.post("/oauth/authorize", data=fields)
        assert answer.status_code == 303, answer.text
        callback = urlsplit(answer.headers["location"])
        assert callback.path == "/ui/callback"
        opened = self.http.get(
            f"/ui/callback?{callback.query}", headers={"Cookie": f"zb_login={login_cookie}"}
        )
        assert opened.status_code == 303, opened.text
        return _cookie(opened, "__Host-zb_session")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.http.get(path, headers=self._headers(), **kwargs)
        found = re.search(r'name="csrf" value="([^"]+)"', answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> httpx.Response:
        if csrf and not self.csrf:
            self.get(path)  # the form's page carries the token
        fields = data | ({"csrf": self.csrf} if csrf else {})
        return self.http.post(path, data=fields, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"Cookie": f"__Host-zb_session={self.session}; zb_lang={self.language}"}


def _cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie in {response.headers}")


def person(server: LiveServer, ura: str, role: str) -> str:
    assert server.settings.database_url
    username = f"{role}-{uuid.uuid4().hex[:6]}"
    add_person(server.settings.database_url, server.settings.data_dir, ura, username, role)
    return username


def agreement_until(server: LiveServer, parties: tuple[str, ...], until: date) -> str:
    """An agreement ending on ``until``, recorded through the package API."""
    from gateway.agreements import add_agreement
    from gateway.service.console import ConsoleChange
    from gateway.service.resources import ResourceService
    from gateway.store.database import Database

    url, data_dir = server.settings.database_url, server.settings.data_dir
    assert url

    async def run() -> str:
        db = Database(url, threads=1)
        try:
            service = ResourceService(db, Settings(data_dir=data_dir, database_url=url))
            await service.start()
            found = await add_agreement(
                service,
                kind="data-sharing",
                parties=list(parties),
                purposes=["TREAT"],
                categories=["treatment"],
                valid_from=date(2024, 1, 1),
                valid_to=until,
                document=None,
                change=ConsoleChange.of("admin-organization", ("test",), "C"),
            )
            return str(found.id)
        finally:
            await db.dispose()

    return asyncio.run(run())


# -- the world ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(server: LiveServer) -> dict[str, Any]:
    """A patient of the holder with a lab result, opened to the partner by consent (and an
    agreement); the partner's clinician reads it; a far hospital's clinician breaks the glass."""
    holder = server.hospital(HOLDER, "Houdend Ziekenhuis")
    partner = server.hospital(PARTNER, "Partner Ziekenhuis")
    server.hospital(UNRELATED, "Ander Ziekenhuis")
    refused = server.hospital(REFUSED, "Geweigerd Ziekenhuis")
    far = server.hospital(FAR, "Ver Ziekenhuis")
    server.agreement(HOLDER, PARTNER)
    today = date.today()
    expiring = agreement_until(server, (HOLDER, FAR), today + timedelta(days=30))
    expired = agreement_until(server, (HOLDER, FAR), today - timedelta(days=30))
    bsn = next(BSNS)
    with server.client(holder) as fhir:
        _patient, result = patient_with_result(fhir, bsn)
        consent = consent_json("c", provision("permit"), patient=bsn)
        consent.pop("id")
        consent.pop("organization")
        recorded = fhir.post("/Consent", json=consent)
        assert recorded.status_code == 201, recorded.text
    clinician = f"arts-{uuid.uuid4().hex[:6]}"
    with server.person(partner, clinician, "clinician") as api:
        read = api.get(f"/Observation/{result}")
    assert read.status_code == 200, read.text
    far_clinician = f"arts-{uuid.uuid4().hex[:6]}"
    with server.person(far, far_clinician, "clinician") as api:
        declared = break_the_glass(api, bsn, "reanimatie op de SEH")
    assert declared.status_code == 201, declared.text
    refused_clinician = f"arts-{uuid.uuid4().hex[:6]}"  # no agreement, no consent: refused
    with server.person(refused, refused_clinician, "clinician") as api:
        assert api.get(f"/Observation/{result}").status_code == 404
    return {
        "bsn": bsn,
        "observation": f"Observation/{result}",
        "consent": recorded.json()["id"],
        "clinician": clinician,
        "far_clinician": far_clinician,
        "refused_clinician": refused_clinician,
        "expiring": expiring,
        "expired": expired,
        "dpo": Browser(server, person(server, HOLDER, "dpo")),
    }


def report(browser: Browser, bsn: str, fmt: str = "html", **fields: str) -> httpx.Response:
    return browser.post("/ui/dpo/report", {"bsn": bsn, "format": fmt, **fields})


def table(page: str, table_id: str) -> str:
    found = re.search(rf'<table id="{table_id}".*?</table>', page, re.S)
    assert found, f"no table {table_id}"
    return found.group(0)


def rows(page: str, table_id: str) -> list[str]:
    return re.findall(r"<tr[ >].*?</tr>", table(page, table_id), re.S)[1:]


# -- the tests -----------------------------------------------------------------------------


def test_a_partners_read_shows_in_the_holders_report_with_its_basis(world):
    answer = report(world["dpo"], world["bsn"])
    assert answer.status_code == 200, answer.text
    (line,) = [
        r
        for r in rows(answer.text, "report")
        if world["observation"] in r and world["clinician"] in r
    ]
    assert PARTNER in line and "Partner Ziekenhuis" in line
    assert "agreement-and-consent" in line and f"Consent/{world['consent']}" in line
    assert "inzien" in line  # the action, in Dutch
    assert world["bsn"] not in str(answer.request.url)


def test_the_report_downloads_as_csv_with_a_line_for_that_access(world):
    since = (date.today() - timedelta(days=1)).isoformat()
    answer = report(world["dpo"], world["bsn"], "csv", **{"from": since})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="inzage-{datetime.now(AMSTERDAM).date().isoformat()}.csv"'
    )
    assert answer.text.splitlines()[0] == ",".join(REPORT_COLUMNS)
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    (line,) = [
        r
        for r in lines
        if r["data"].startswith(world["observation"]) and r["organization"] == PARTNER
    ]
    assert (line["user_name"], line["organization"], line["role"]) == (
        world["clinician"],
        PARTNER,
        "clinician",
    )
    assert line["basis"] == "agreement-and-consent" and line["emergency"] == "no"
    assert all(r["patient"] == world["bsn"] for r in lines)


def test_a_dpo_of_an_unrelated_hospital_does_not_see_the_access(server, world):
    stranger = Browser(server, person(server, UNRELATED, "dpo"))
    answer = report(stranger, world["bsn"])
    assert answer.status_code == 200, answer.text
    assert world["clinician"] not in answer.text and world["observation"] not in answer.text
    searched = stranger.post("/ui/dpo/audit", {"bsn": world["bsn"]})
    assert searched.status_code == 200 and world["clinician"] not in searched.text
    unfiltered = stranger.get("/ui/dpo/audit", params={"agent": world["clinician"]})
    assert unfiltered.status_code == 200 and world["observation"] not in unfiltered.text


def test_the_report_says_why_an_access_was_refused(world):
    lines = rows(report(world["dpo"], world["bsn"]).text, "report")
    refused = [r for r in lines if world["refused_clinician"] in r]
    assert refused, lines
    # The attempt, as the clinician was answered, and the decision, with the rule that denied.
    assert len(refused) == 2, refused
    assert any("404" in r and "is not known" in r for r in refused), refused
    assert any("have no agreement" in r for r in refused), refused


def test_the_audit_search_filters_by_agent_and_outcome_and_by_patient_in_a_post(world):
    dpo = world["dpo"]
    (line,) = [
        r
        for r in rows(report(dpo, world["bsn"]).text, "report")
        if world["observation"] in r and world["clinician"] in r
    ]
    # The report links the agent to the audit search by its id: a URL without patient data.
    link = re.search(r'href="(/ui/dpo/audit\?agent=[^"]+)"', line)
    assert link and world["bsn"] not in link.group(1)
    agent = dict(parse_qsl(urlsplit(link.group(1)).query))["agent"]
    found = dpo.get("/ui/dpo/audit", params={"agent": agent, "outcome": "success"})
    assert found.status_code == 200, found.text
    lines = rows(found.text, "audit-events")
    assert lines and all(world["clinician"] in r for r in lines)
    assert any(world["observation"] in r and "agreement-and-consent" in r for r in lines)
    refused = dpo.get("/ui/dpo/audit", params={"agent": agent, "outcome": "failure"})
    assert refused.status_code == 200 and world["observation"] not in refused.text
    by_patient = dpo.post("/ui/dpo/audit", {"bsn": world["bsn"], "type": "read"})
    assert by_patient.status_code == 200, by_patient.text
    lines = rows(by_patient.text, "audit-events")
    assert any(world["observation"] in r for r in lines)
    assert all(world["bsn"] in r and ">read<" in r for r in lines)


def test_a_clinician_is_refused_the_dpo_pages(server):
    clinician = Browser(server, person(server, HOLDER, "clinician"))
    for path in ("/ui/dpo", "/ui/dpo/audit", "/ui/dpo/report", "/ui/dpo/consents"):
        assert clinician.get(path).status_code == 403, path


def test_a_post_without_the_csrf_token_is_refused(world):
    answer = world["dpo"].post("/ui/dpo/report", {"bsn": world["bsn"], "format": "csv"}, csrf=False)
    assert answer.status_code == 403
    assert world["observation"] not in answer.text


def test_an_invalid_bsn_is_refused_with_422(world):
    answer = report(world["dpo"], "123456789")
    assert answer.status_code == 422
    assert "geen geldig BSN" in answer.text


def test_the_overview_shows_the_chain_intact_an_emergency_and_agreements_to_renew(world):
    answer = world["dpo"].get("/ui/dpo")
    assert answer.status_code == 200, answer.text
    assert 'id="chain-ok"' not in answer.text  # the whole chain is read only on request
    checked = world["dpo"].post("/ui/dpo/verify", {})
    assert checked.status_code == 200, checked.text
    assert 'id="chain-ok"' in checked.text and "Intact" in checked.text
    (declaration,) = rows(answer.text, "emergencies")
    assert world["far_clinician"] in declaration and "reanimatie op de SEH" in declaration
    (flag,) = [r for r in rows(answer.text, "flags") if world["far_clinician"] in r]
    assert "Noodtoegang" in flag and FAR in flag
    agreements = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr data-agreement="([^"]+)">.*?</tr>', answer.text, re.S)
    }
    assert 'class="warn">verloopt binnenkort' in agreements[world["expiring"]]
    assert 'class="warn">verlopen' in agreements[world["expired"]]
    assert all(
        "warn" not in row
        for key, row in agreements.items()
        if key not in (world["expiring"], world["expired"])
    )


def test_the_consents_page_shows_the_consent_and_who_may_see_what(world):
    answer = world["dpo"].post("/ui/dpo/consents", {"bsn": world["bsn"]})
    assert answer.status_code == 200, answer.text
    assert f'data-consent="{world["consent"]}"' in answer.text
    access = rows(answer.text, "access")
    partner = [r for r in access if PARTNER in r]
    unrelated = [r for r in access if UNRELATED in r]
    assert partner and all(">ja<" in r for r in partner)
    assert unrelated and all(">nee<" in r and "no-agreement" in r for r in unrelated)
    # The explanations and categories are in the page's language.
    assert all("Toegestaan voor" in r and "van de patiënt staat het toe" in r for r in partner)
    assert all(f"{UNRELATED} en {HOLDER} hebben geen overeenkomst" in r for r in unrelated)
    assert any("<td>persoonsgegevens</td>" in r for r in access)
    assert "Permitted" not in answer.text and "Denied" not in answer.text


def test_the_consents_page_explains_in_english_when_asked(world):
    dpo = world["dpo"]
    dpo.language = "en"
    try:
        answer = dpo.post("/ui/dpo/consents", {"bsn": world["bsn"]})
    finally:
        dpo.language = "nl"
    access = rows(answer.text, "access")
    assert all("Permitted for" in r for r in access if PARTNER in r)
    assert all(f"{UNRELATED} and {HOLDER} have no agreement" in r for r in access if UNRELATED in r)
    assert any("<td>demographics</td>" in r for r in access)
