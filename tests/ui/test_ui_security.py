"""The web UI's defences, checked from outside: in Debian's Chromium and over raw HTTP.

No page without a login; no form post without the session's CSRF token from our own origin;
sessions that end when idle and at logout, on the server; strict security headers and session
cookie; no BSN in any URL; a search that works by keyboard; no critical accessibility faults.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from browser import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    axe,
    http_log_in,
    log_in,
    off_loop,
    path_of,
    screenshot,
    set_cookies,
    summary,
)
from harness import PERSON_PASSWORD, LiveServer, add_person, start_server, valid_bsns

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "90000801"
CLINICIAN, ASSISTANT, DPO = "ui-sec-arts", "ui-sec-assistent", "ui-sec-fg"
FAMILY, GIVEN, BIRTH = "Brugman", "Sanne", "1971-04-12"
LETTER = "Ontslagbrief UI-test"
BSNS = valid_bsns(999980100)
IDLE_S = 2.0


@dataclass(frozen=True)
class World:
    url: str
    bsn: str
    document: str


def seed(server: LiveServer) -> World:
    """A hospital with one patient (BSN, a lab result, a problem, a letter), a clinician, an
    assistant and a DPO, all on ``server``'s store."""
    hospital = off_loop(server.hospital, URA, "Beveiligd Ziekenhuis")
    bsn = next(BSNS)
    with server.client(hospital) as fhir:
        patient = fhir.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": BSN_SYSTEM, "value": bsn}],
                "name": [{"family": FAMILY, "given": [GIVEN]}],
                "birthDate": BIRTH,
            },
        )
        assert patient.status_code == 201, patient.text
        subject = {"reference": f"Patient/{patient.json()['id']}"}
        made = [
            fhir.post(
                "/Observation",
                json={
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "Hemoglobine"},
                    "subject": subject,
                    "effectiveDateTime": "2025-06-01T10:00:00+02:00",
                    "valueQuantity": {"value": 8.1, "unit": "mmol/L"},
                },
            ),
            fhir.post(
                "/Condition",
                json={"resourceType": "Condition", "code": {"text": "Astma"}, "subject": subject},
            ),
            fhir.post(
                "/DocumentReference",
                json={
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "description": LETTER,
                    "subject": subject,
                    "date": "2025-06-02T09:00:00+02:00",
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain",
                                "data": base64.b64encode(b"Patient ontslagen.").decode(),
                            }
                        }
                    ],
                },
            ),
        ]
    for response in made:
        assert response.status_code == 201, response.text
    for username, role in ((CLINICIAN, "clinician"), (ASSISTANT, "assistant"), (DPO, "dpo")):
        off_loop(
            add_person, server.settings.database_url, server.settings.data_dir, URA, username, role
        )
    return World(server.url, bsn, made[-1].json()["id"])


@pytest.fixture(scope="module")
def world(server: LiveServer) -> World:
    return seed(server)


class Pages:
    """Browser contexts of one test, closed after it."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []

    def log_in(self, base_url: str, username: str, **options: Any) -> Any:
        page = log_in(self.browser, base_url, username, PERSON_PASSWORD, **options)
        self.contexts.append(page.context)
        return page

    def new_page(self, **options: Any) -> Any:
        context = self.browser.new_context(**options)
        context.set_default_timeout(20_000)
        self.contexts.append(context)
        return context.new_page()


@pytest.fixture
def pages(browser: Any) -> Iterator[Pages]:
    opened = Pages(browser)
    yield opened
    for context in opened.contexts:
        context.close()


def clinician(world: World) -> Any:
    return http_log_in(world.url, CLINICIAN, PERSON_PASSWORD)


def session_cookie(page: Any) -> dict[str, Any]:
    [cookie] = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    return dict(cookie)


def with_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


def refused_to_login(response: httpx.Response) -> None:
    """Sent back to the landing page to log in: no page, no patient data. A request that came
    with a session cookie learns that its session has ended, and the browser drops the cookie."""
    assert response.status_code == 303, (response.status_code, response.text[:300])
    if SESSION_COOKIE in response.request.headers.get("cookie", ""):
        assert response.headers["location"] == "/ui/?expired=1"
        assert set_cookies(response)[SESSION_COOKIE].value == ""
    else:
        assert response.headers["location"] == "/ui/"


# -- access without login --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ui/patients", "/ui/patient", "/ui/send", "/ui/dpo", "/ui/documents/x"]
)
def test_pages_need_a_login(world: World, path: str) -> None:
    for headers in ({}, with_cookie("not-a-session")):
        response = httpx.get(f"{world.url}{path}", headers=headers, timeout=60)
        refused_to_login(response)
        assert world.bsn not in response.text and FAMILY not in response.text


def test_search_without_session_does_not_run(world: World) -> None:
    for headers in ({}, with_cookie("not-a-session")):
        response = httpx.post(
            f"{world.url}/ui/patients",
            data={"bsn": world.bsn, "csrf": "anything"},
            headers=headers,
            timeout=60,
        )
        refused_to_login(response)
        assert world.bsn not in response.text


def test_other_roles_do_not_see_patients(world: World) -> None:
    assistant = http_log_in(world.url, ASSISTANT, PERSON_PASSWORD)
    for response in (
        assistant.get("/ui/patients"),
        assistant.get("/ui/patient"),
        assistant.get(f"/ui/documents/{world.document}"),
        assistant.post("/ui/patients", {"bsn": world.bsn, "csrf": assistant.csrf}),
    ):
        assert response.status_code == 403, (response.request.url, response.status_code)
        assert "Dit scherm is niet voor uw rol." in response.text
        assert world.bsn not in response.text and LETTER not in response.text


# -- CSRF --------------------------------------------------------------------------------------


def test_csrf_wrong_or_missing_token_is_refused(world: World) -> None:
    session, other = clinician(world), clinician(world)
    assert session.csrf != other.csrf
    for extra in (
        {},
        {"csrf": ""},
        {"csrf": "wrong"},
        {"csrf": session.csrf[:-1]},
        {"csrf": other.csrf},  # another session's token
    ):
        response = session.post("/ui/patients", {"bsn": world.bsn} | extra)
        assert response.status_code == 403, (extra, response.status_code)
        assert "Het formulier is verlopen of niet van deze site" in response.text
        assert world.bsn not in response.text
    # Nothing was done: no patient was put in view.
    assert session.get("/ui/patient").status_code == 409


def test_csrf_foreign_origin_is_refused(world: World) -> None:
    session = clinician(world)
    for origin in ("https://evil.example", "null", world.url.replace("127.0.0.1", "localhost")):
        response = session.post(
            "/ui/patients", {"bsn": world.bsn, "csrf": session.csrf}, headers={"Origin": origin}
        )
        assert response.status_code == 403, (origin, response.status_code)
        assert world.bsn not in response.text
    assert session.get("/ui/patient").status_code == 409


def test_csrf_right_token_opens_the_patient(world: World) -> None:
    session = clinician(world)
    response = session.post(
        "/ui/patients", {"bsn": world.bsn, "csrf": session.csrf}, headers={"Origin": world.url}
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/patient"
    shown = session.get("/ui/patient")
    assert shown.status_code == 200
    assert f"{GIVEN} {FAMILY}" in shown.text and LETTER in shown.text


def test_incomplete_forms_are_refused_on_the_server_and_change_nothing(world: World) -> None:
    """What the browser's "required" keeps from being sent is refused again by the server."""
    session = clinician(world)
    session.post("/ui/patients", {"bsn": world.bsn, "csrf": session.csrf})
    glass = session.post("/ui/patient/emergency", {"reason": "  ", "csrf": session.csrf})
    assert glass.status_code == 422, glass.text
    assert 'id="emergency-banner"' not in session.get("/ui/patient").text
    before = session.get("/ui/patient/consent").text.count("data-status=")
    nobody = session.post("/ui/patient/consent", {"category": "documents", "csrf": session.csrf})
    assert nobody.status_code == 422 and "minstens één ontvanger" in nobody.text
    nothing = session.post("/ui/patient/consent", {"recipient": "network", "csrf": session.csrf})
    assert nothing.status_code == 422 and "minstens één categorie" in nothing.text
    assert session.get("/ui/patient/consent").text.count("data-status=") == before


# -- sessions end ------------------------------------------------------------------------------


def test_idle_session_expires(server: LiveServer, pages: Pages, tmp_path: Any) -> None:
    short, database = start_server(server.backend, tmp_path, ui_idle_timeout_s=IDLE_S)
    try:
        seed(short)
        page = pages.log_in(short.url, CLINICIAN, role="clinician")
        stale = session_cookie(page)["value"]
        csrf = page.locator("input[name=csrf]").first.get_attribute("value")
        time.sleep(IDLE_S + 1.5)
        page.goto(f"{short.url}/ui/patients")
        assert path_of(page.url) == "/ui/"
        assert page.get_by_text("Uw sessie is verlopen; log opnieuw in.").is_visible()
        assert page.get_by_role("link", name="Inloggen", exact=True).is_visible()
        # The old cookie stays dead, whatever comes after: more requests with it, a new login.
        for _ in range(3):
            refused_to_login(httpx.get(f"{short.url}/ui/patients", headers=with_cookie(stale)))
        fresh = http_log_in(short.url, CLINICIAN, PERSON_PASSWORD)
        assert fresh.get("/ui/patients").status_code == 200
        refused_to_login(httpx.get(f"{short.url}/ui/patients", headers=with_cookie(stale)))
        refused_to_login(
            httpx.post(
                f"{short.url}/ui/patients",
                data={"bsn": "999980100", "csrf": csrf or ""},
                headers=with_cookie(stale),
            )
        )
    finally:
        short.stop()
        database.drop()


def test_an_abandoned_session_is_removed_from_the_store_at_the_next_login(
    server: LiveServer, tmp_path: Any
) -> None:
    """A session nobody comes back to (a closed browser) does not stay in the store."""
    from sqlalchemy import create_engine, text

    from gateway.auth.sessions import token_hash

    short, database = start_server(server.backend, tmp_path, ui_idle_timeout_s=IDLE_S)
    engine = create_engine(str(short.settings.database_url))
    try:
        seed(short)
        abandoned = http_log_in(short.url, CLINICIAN, PERSON_PASSWORD)

        def stored(token: str) -> int:
            with engine.connect() as conn:
                query = text("SELECT count(*) FROM ui_sessions WHERE token_hash = :h")
                return int(conn.execute(query, {"h": token_hash(token)}).scalar_one())

        assert stored(abandoned.token) == 1
        time.sleep(IDLE_S + 1.5)
        http_log_in(short.url, ASSISTANT, PERSON_PASSWORD)
        assert stored(abandoned.token) == 0
    finally:
        engine.dispose()
        short.stop()
        database.drop()


def test_activity_keeps_a_short_idle_session_alive(server: LiveServer, tmp_path: Any) -> None:
    short, database = start_server(server.backend, tmp_path, ui_idle_timeout_s=IDLE_S)
    try:
        seed(short)
        session = http_log_in(short.url, CLINICIAN, PERSON_PASSWORD)
        deadline = time.monotonic() + IDLE_S * 2
        while time.monotonic() < deadline:  # a request every half idle period
            response = session.get("/ui/patients")
            assert response.status_code == 200, "the session ended while in use"
            time.sleep(IDLE_S / 4)
    finally:
        short.stop()
        database.drop()


def test_logout_ends_the_session_on_the_server(world: World, pages: Pages) -> None:
    session = clinician(world)
    refused = session.post("/ui/logout", {"csrf": "wrong"})
    assert refused.status_code == 403
    assert session.get("/ui/patients").status_code == 200  # still logged in

    page = pages.log_in(world.url, CLINICIAN, role="clinician")
    stale = session_cookie(page)["value"]
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    find_by_bsn(page, world.bsn)
    page.get_by_role("button", name="Uitloggen").click()
    page.wait_for_url(lambda url: path_of(url) == "/ui/")
    assert page.get_by_role("link", name="Inloggen", exact=True).is_visible()
    assert not [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    # Back does not bring the patient back from a cache (no-store): the page is asked for
    # again, and without a session that is the landing page.
    page.go_back()
    page.wait_for_load_state()
    assert path_of(page.url) == "/ui/"
    assert FAMILY not in page.content() and world.bsn not in page.content()
    # The server forgot the session: the old cookie, replayed, opens nothing.
    refused_to_login(httpx.get(f"{world.url}/ui/patients", headers=with_cookie(stale)))
    refused_to_login(
        httpx.post(
            f"{world.url}/ui/patients",
            data={"bsn": world.bsn, "csrf": csrf},
            headers=with_cookie(stale),
        )
    )
    # Another session of the same person lives on.
    assert session.get("/ui/patients").status_code == 200


def test_disabled_account_session_ends(world: World, server: LiveServer) -> None:
    username = "ui-sec-vertrokken"
    off_loop(
        add_person,
        server.settings.database_url,
        server.settings.data_dir,
        URA,
        username,
        "clinician",
    )
    session = http_log_in(world.url, username, PERSON_PASSWORD)
    assert session.get("/ui/patients").status_code == 200
    disabled = server.cli("users", "disable", username)
    assert disabled.returncode == 0, disabled.stderr
    refused_to_login(session.get("/ui/patients"))


# -- headers and cookies -----------------------------------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            found.setdefault(words[0].lower(), words[1:])
    return found


def check_page_headers(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    assert response.headers.get("content-type", "").startswith("text/html"), where
    policy = directives(response.headers.get("content-security-policy", ""))
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts is not None, f"{where}: no script policy"
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:"} & set(scripts), where
    assert policy.get("frame-ancestors") == ["'none'"], where
    assert response.headers.get("x-frame-options") == "DENY", where
    assert "no-store" in response.headers.get("cache-control", ""), where


def test_security_headers_on_every_page(world: World) -> None:
    landing = httpx.get(f"{world.url}/ui/", timeout=60)
    start = httpx.get(f"{world.url}/ui/login", timeout=60)
    login_form = httpx.get(f"{world.url}{start.headers['location']}", timeout=60)
    assert (landing.status_code, login_form.status_code) == (200, 200)
    # The login cookie: the code verifier, for /ui/callback only.
    waiting = set_cookies(start)[LOGIN_COOKIE]
    assert waiting["secure"] and waiting["httponly"] and waiting["path"] == "/ui/callback"

    session = clinician(world)
    cookie = session.cookie
    assert cookie["secure"] is True and cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/" and not cookie["domain"]  # what __Host- demands

    responses = [
        landing,
        login_form,
        httpx.get(f"{world.url}/ui/nothing-here", timeout=60),
        session.get("/ui/patients"),
        session.get("/ui/patient"),  # no patient chosen yet: 409
        session.post("/ui/patients", {"bsn": "123456789", "csrf": session.csrf}),  # elfproef
        session.post("/ui/patients", {"bsn": world.bsn, "csrf": "wrong"}),  # 403
        session.post(
            "/ui/patients", {"family": "Niemand", "birthdate": "1900-01-01", "csrf": session.csrf}
        ),
    ]
    chosen = session.post("/ui/patients", {"bsn": world.bsn, "csrf": session.csrf})
    assert chosen.status_code == 303 and "no-store" in chosen.headers["cache-control"]
    responses += [
        session.get("/ui/patient"),
        session.get("/ui/patient?kind=results&from=2025-01-01"),
        session.get(f"/ui/documents/{world.document}"),
        session.get("/ui/documents/does-not-exist"),
    ]
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 404, 200, 409, 422, 403, 200, 200, 200, 200, 404], statuses
    for response in responses:
        check_page_headers(response)
    assert LETTER in responses[-2].text

    # The other roles' screens.
    for username, paths in (
        (ASSISTANT, ("/ui/send", "/ui/inbox", "/ui/sent")),
        (DPO, ("/ui/dpo", "/ui/dpo/audit", "/ui/dpo/report", "/ui/dpo/consents")),
    ):
        person = http_log_in(world.url, username, PERSON_PASSWORD)
        for path in paths:
            response = person.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            check_page_headers(response)


# -- in the browser ----------------------------------------------------------------------------


def find_by_bsn(page: Any, bsn: str) -> None:
    page.fill("#bsn", bsn)
    page.locator("form[action='/ui/patients'] button[type=submit]").first.click()
    page.wait_for_url(lambda url: path_of(url) == "/ui/patient")


def test_no_bsn_in_any_url(world: World, pages: Pages) -> None:
    page = pages.log_in(world.url, CLINICIAN, role="clinician")
    cookie = session_cookie(page)
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

    find_by_bsn(page, world.bsn)
    assert page.get_by_role("heading", name=f"{GIVEN} {FAMILY}").is_visible()
    page.get_by_role("link", name=LETTER).click()
    page.wait_for_url(lambda url: path_of(url) == f"/ui/documents/{world.document}")
    page.go_back()
    page.select_option("#f-kind", "results")
    page.get_by_role("button", name="Filteren").click()
    page.wait_for_url(lambda url: "kind=results" in url)
    # By family name and birth date: one match, straight to the patient.
    page.goto(f"{world.url}/ui/patients")
    page.fill("#family", FAMILY)
    page.fill("#birthdate", BIRTH)
    page.locator("form[action='/ui/patients'] button[type=submit]").first.click()
    page.wait_for_url(lambda url: path_of(url) == "/ui/patient")
    assert world.bsn in page.content()  # shown on the page, as it should be

    visited = {path_of(url) for url in urls}
    assert {"/ui/patients", "/ui/patient", f"/ui/documents/{world.document}"} <= visited
    assert [url for url in urls if world.bsn in url] == []
    assert [line for line in console if "Content Security Policy" in line] == []


def test_search_by_keyboard(world: World, pages: Pages) -> None:
    page = pages.log_in(world.url, CLINICIAN, role="clinician")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement && document.activeElement.id") == "bsn":
            break
    else:
        pytest.fail("Tab never reached the BSN field")
    page.keyboard.type(world.bsn)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda url: path_of(url) == "/ui/patient")
    assert page.get_by_role("heading", name=f"{GIVEN} {FAMILY}").is_visible()


def test_accessibility_no_critical_violations(
    world: World, pages: Pages, server: LiveServer
) -> None:
    page = pages.new_page(bypass_csp=True)  # axe is injected inline
    found: dict[str, list[dict[str, Any]]] = {}

    def check(name: str) -> None:
        found[name] = axe(page)
        screenshot(page, f"security-{name}-{server.backend}")

    page.goto(f"{world.url}/ui/")
    check("landing")
    page.get_by_role("link", name="Inloggen", exact=True).click()
    page.wait_for_url(lambda url: path_of(url) == "/oauth/authorize")
    check("login")
    page.fill("#username", CLINICIAN)
    page.fill("#password", PERSON_PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(lambda url: path_of(url) == "/ui/patients")
    check("patients")
    find_by_bsn(page, world.bsn)
    check("patient")
    page.get_by_role("link", name=LETTER).click()
    page.wait_for_url(lambda url: path_of(url).startswith("/ui/documents/"))
    check("document")

    critical = {
        name: summary([v for v in violations if v.get("impact") == "critical"])
        for name, violations in found.items()
    }
    assert {name: lines for name, lines in critical.items() if lines} == {}
