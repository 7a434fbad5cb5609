"""The journeys the web UI exists for, in Debian's Chromium against a real gateway.

An assistant of hospital A sends a PDF to hospital B instead of e-mailing it; B's clinician does
not see it in the shared record until A records the patient's consent, then sees and opens it;
A's data-protection officer finds that view, with its consent basis, in the patient's access
report. A clinician of a hospital without consent breaks the glass and works under a banner.
B's assistant marks the letter processed and A's assistant sees that. Every page is screenshot
and checked with axe-core.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import axe, log_in, off_loop, screenshot, summary
from harness import PERSON_PASSWORD, LiveServer, add_person, valid_bsns

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
# A real third-party PDF (HL7's C-CDA R2 unstructured-document sample; see MANIFEST.md).
PDF = SHARED / "c-cda" / "unstructured" / "CDA_with_Embedded_PDF_1" / "C-CDA_R2_UD_sample.pdf"
A, B, C = "90000911", "90000912", "90000913"
NAMES = {A: "Ziekenhuis Aan de Rivier", B: "Universitair Centrum Berg", C: "Kliniek Citadel"}
TITLE = "Ontslagbrief longchirurgie"
BSNS = valid_bsns(999970100)


@dataclass(frozen=True)
class Network:
    url: str
    bsn: str
    family: str
    holder: Any  # hospital A's integration (tests/harness.py Hospital)


def person(server: LiveServer, ura: str, role: str) -> str:
    username = f"{role}-{ura}-ui"
    add_person(server.settings.database_url, server.settings.data_dir, ura, username, role)
    return username


@pytest.fixture(scope="module")
def network(server: LiveServer) -> Network:
    return off_loop(seed, server)


def seed(server: LiveServer) -> Network:
    """Three hospitals; A has an agreement with B and with C (an emergency needs one too), and
    the patient has consented to neither. A holds a patient with a lab result; people of every
    role."""
    hospitals = {ura: server.hospital(ura, name) for ura, name in NAMES.items()}
    server.agreement(A, B)
    server.agreement(A, C)
    bsn = next(BSNS)
    with server.client(hospitals[A]) as fhir:
        patient = fhir.post(
            "/Patient",
            json={
                "resourceType": "Patient",
                "identifier": [{"system": BSN_SYSTEM, "value": bsn}],
                "name": [{"family": "Vermeulen", "given": ["Jan"]}],
                "birthDate": "1950-02-03",
            },
        )
        assert patient.status_code == 201, patient.text
        result = fhir.post(
            "/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"text": "Kreatinine"},
                "subject": {"reference": f"Patient/{patient.json()['id']}"},
                "effectiveDateTime": "2026-10-01T08:00:00+02:00",
                "valueQuantity": {"value": 131, "unit": "umol/L"},
                "referenceRange": [
                    {
                        "low": {"value": 60, "unit": "umol/L"},
                        "high": {"value": 110, "unit": "umol/L"},
                    }
                ],
                "interpretation": [{"coding": [{"code": "H"}]}],
            },
        )
        assert result.status_code == 201, result.text
    for ura, role in (
        (A, "assistant"),
        (A, "clinician"),
        (A, "dpo"),
        (B, "clinician"),
        (B, "assistant"),
        (C, "clinician"),
    ):
        person(server, ura, role)
    return Network(server.url, bsn, "Vermeulen", hospitals[A])


class Browsers:
    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []

    def as_(self, network: Network, ura: str, role: str, **options: Any) -> Any:
        page = log_in(
            self.browser, network.url, f"{role}-{ura}-ui", PERSON_PASSWORD, role=role, **options
        )
        page.on("dialog", lambda dialog: dialog.accept())
        self.contexts.append(page.context)
        return page


@pytest.fixture
def browsers(browser: Any) -> Iterator[Browsers]:
    opened = Browsers(browser)
    yield opened
    for context in opened.contexts:
        context.close()


def open_patient(page: Any, bsn: str) -> None:
    page.goto(page.url.split("/ui/")[0] + "/ui/patients")
    page.fill("#bsn", bsn)
    page.locator("form.card button[type=submit]").click()
    page.wait_for_url("**/ui/patient")


def timeline(page: Any) -> str:
    return page.locator("#timeline-items").inner_text()


def access_report(dpo: Any, network: Network) -> str:
    """The DPO's NEN 7513 access report of the network's patient, as shown: a line per row
    (a cell may hold more than one line, e.g. an emergency and its reason)."""
    dpo.goto(network.url + "/ui/dpo/report")
    dpo.fill("#bsn", network.bsn)
    dpo.locator("button[name=format][value=html]").click()
    dpo.wait_for_load_state()
    rows = dpo.locator("main table").last.locator("tr").all_inner_texts()
    return "\n".join(" ".join(row.split()) for row in rows)


def assert_accessible(page: Any) -> None:
    critical = [v for v in axe(page) if v.get("impact") == "critical"]
    assert not critical, summary(critical)


def test_a_letter_sent_by_the_assistant_is_seen_by_the_partner_only_after_consent_and_audited(
    network: Network, browsers: Browsers
) -> None:
    # A's assistant sends the PDF to B: the replacement of the secure e-mail.
    assistant = browsers.as_(network, A, "assistant", bypass_csp=True)
    assistant.select_option("#recipient", B)
    assistant.fill("#bsn", network.bsn)
    assistant.set_input_files("#file", str(PDF))
    assistant.select_option("#type", "18842-5")
    assistant.fill("#title", TITLE)
    screenshot(assistant, "assistant-send")
    assert_accessible(assistant)
    assistant.locator("form.card button[type=submit]").click()
    assistant.wait_for_url("**/ui/sent")
    sent = assistant.locator("#sent tbody tr").first
    assert NAMES[B] in sent.inner_text()
    assert sent.locator("td[data-status]").get_attribute("data-status") == "requested"
    screenshot(assistant, "assistant-sent")
    assert_accessible(assistant)

    # B's clinician: the patient's record shows nothing of A without consent.
    partner = browsers.as_(network, B, "clinician", bypass_csp=True)
    open_patient(partner, network.bsn)
    assert TITLE not in timeline(partner)
    assert "Kreatinine" not in timeline(partner)
    assert partner.locator("main .alert").count() == 1  # "no data you may see"

    # A's clinician records the patient's consent: B may see documents.
    holder = browsers.as_(network, A, "clinician", bypass_csp=True)
    open_patient(holder, network.bsn)
    assert "Kreatinine" in timeline(holder)  # A's own data, always
    holder.get_by_role("link", name="Toestemmingen").click()
    holder.wait_for_url("**/ui/patient/consent")
    holder.check(f"input[name=recipient][value='{B}']")
    holder.check("input[name=category][value=documents]")
    holder.set_input_files("#scan", str(PDF))  # the signed form, kept with the consent
    holder.locator("form.card button[type=submit]").click()
    holder.wait_for_url("**/ui/patient/consent")
    recorded = holder.locator("#consents tbody tr").first
    assert recorded.get_attribute("data-status") == "active"
    assert NAMES[B] in recorded.inner_text()
    assert recorded.locator("[data-scan]").count() == 1
    screenshot(holder, "clinician-consent")
    assert_accessible(holder)

    # B's clinician now sees the letter, marked with its source, but still not the lab result
    # (the consent names documents only), and opens it.
    partner.reload()
    row = partner.locator("#timeline-items tbody tr", has_text=TITLE)
    assert row.count() == 1
    assert NAMES[A] in row.inner_text()
    assert "Kreatinine" not in timeline(partner)
    screenshot(partner, "clinician-patient")
    assert_accessible(partner)
    row.get_by_role("link", name=TITLE).click()
    partner.wait_for_url("**/ui/documents/*")
    assert partner.locator("iframe.document-frame").count() == 1
    content = partner.request.get(partner.url + "/content")
    assert content.status == 200
    assert content.headers["content-type"] == "application/pdf"
    assert content.body() == PDF.read_bytes()
    screenshot(partner, "clinician-document")
    assert_accessible(partner)

    # A's DPO finds that view in the patient's access report, with its consent basis.
    dpo = browsers.as_(network, A, "dpo", bypass_csp=True)
    report = access_report(dpo, network)
    viewer = f"clinician-{B}-ui"
    lines = [line for line in report.splitlines() if viewer in line]
    assert lines, report
    assert any("onsent" in line for line in lines), lines  # consent/Consent basis named
    # In the viewer, that the letter was also addressed to B is no basis: consent opened it.
    assert not any("referral" in line for line in lines), lines
    screenshot(dpo, "dpo-report")
    assert_accessible(dpo)

    # Revoking closes it again at once.
    holder.locator("#consents tbody tr").first.get_by_role("button", name="Intrekken").click()
    holder.wait_for_url("**/ui/patient/consent")
    assert holder.locator("#consents tbody tr").first.get_attribute("data-status") == "inactive"
    partner.goto(network.url + "/ui/patient")
    assert TITLE not in timeline(partner)


def test_break_the_glass_shows_everything_under_a_banner_and_the_dpo_sees_the_emergency(
    network: Network, browsers: Browsers
) -> None:
    stranger = browsers.as_(network, C, "clinician", bypass_csp=True)
    open_patient(stranger, network.bsn)
    assert "Kreatinine" not in timeline(stranger)
    assert stranger.locator("#emergency-banner").count() == 0
    stranger.locator("details summary").click()
    # The reason is mandatory: the browser keeps an empty form from leaving.
    stranger.locator("form[action='/ui/patient/emergency'] button").click()
    assert stranger.url.endswith("/ui/patient")
    stranger.fill("#reason", "Bewusteloos binnengebracht op de SEH")
    stranger.locator("form[action='/ui/patient/emergency'] button").click()
    stranger.wait_for_url("**/ui/patient")
    assert stranger.locator("#emergency-banner").is_visible()
    row = stranger.locator("#timeline-items tbody tr", has_text="Kreatinine")
    assert "131 umol/L" in row.inner_text() and "60 umol/L - 110 umol/L" in row.inner_text()
    assert row.locator(".abnormal").count() == 1
    screenshot(stranger, "clinician-emergency")
    assert_accessible(stranger)

    dpo = browsers.as_(network, A, "dpo", bypass_csp=True)
    report = access_report(dpo, network)
    assert any(f"clinician-{C}-ui" in line and "ja" in line for line in report.splitlines()), report
    dpo.goto(network.url + "/ui/dpo")
    assert f"clinician-{C}-ui" in dpo.locator("main").inner_text()
    screenshot(dpo, "dpo-overview")
    assert_accessible(dpo)


def test_the_recipient_marks_the_letter_processed_and_the_sender_sees_it(
    network: Network, browsers: Browsers
) -> None:
    sender = browsers.as_(network, A, "assistant")
    sender.select_option("#recipient", B)
    sender.fill("#bsn", network.bsn)
    sender.set_input_files("#file", str(PDF))
    sender.fill("#title", "Operatieverslag")
    sender.select_option("#type", "11504-8")
    sender.locator("form.card button[type=submit]").click()
    sender.wait_for_url("**/ui/sent")

    inbox = browsers.as_(network, B, "assistant", bypass_csp=True)
    inbox.goto(network.url + "/ui/inbox")
    row = inbox.locator("#inbox tbody tr", has_text="Operatieverslag").first
    assert NAMES[A] in row.inner_text() and "Vermeulen" in row.inner_text()
    link = row.get_by_role("link").first
    pdf = inbox.request.get(network.url + link.get_attribute("href"))
    assert pdf.status == 200 and pdf.body() == PDF.read_bytes()
    screenshot(inbox, "assistant-inbox")
    assert_accessible(inbox)
    row.get_by_role("button", name="Markeer als verwerkt").click()
    inbox.wait_for_url("**/ui/inbox")
    assert (
        "Verwerkt"
        in inbox.locator("#inbox tbody tr", has_text="Operatieverslag").first.inner_text()
    )

    sender.goto(network.url + "/ui/sent")
    done = sender.locator("#sent tbody tr", has_text="Operatieverslag").first
    assert done.locator("td[data-status]").get_attribute("data-status") == "completed"


def test_the_record_filters_opens_a_cda_letter_as_safe_html_and_fits_a_tablet(
    network: Network, browsers: Browsers, server: LiveServer
) -> None:
    off_loop(store_cda, server, network, CDA_TITLE, CDA)
    tablet = browsers.as_(
        network, A, "clinician", viewport={"width": 768, "height": 1024}, bypass_csp=True
    )
    open_patient(tablet, network.bsn)
    # Nothing wider than the screen: no sideways scrolling of the page on a tablet.
    assert tablet.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    tablet.select_option("#f-kind", "results")
    tablet.get_by_role("button", name="Filteren").click()
    tablet.wait_for_load_state()
    kinds = tablet.locator("#timeline-items tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.kind)"
    )
    assert kinds and set(kinds) == {"results"}, kinds
    tablet.select_option("#f-kind", "documents")
    tablet.get_by_role("button", name="Filteren").click()
    tablet.wait_for_load_state()
    tablet.get_by_role("link", name=CDA_TITLE).click()
    tablet.wait_for_url("**/ui/documents/*")
    article = tablet.locator("article.cda")
    assert article.locator("h2").count() >= 3  # the document's sections, as headings
    assert article.locator("script").count() == 0
    assert tablet.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(tablet, "clinician-cda-tablet")
    assert_accessible(tablet)

    # An unstructured CDA: the PDF inside it opens as the PDF.
    wrapped = off_loop(store_cda, server, network, "Verslag (PDF in CDA)", EMBEDDING_CDA)
    tablet.goto(f"{network.url}/ui/documents/{wrapped}")
    inner = tablet.get_by_role("link", name="Het document (PDF)")
    pdf = tablet.request.get(network.url + str(inner.get_attribute("href")))
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body() == PDF.read_bytes()

    # The assistant sends that same letter on, picked from the hospital's own documents.
    assistant = browsers.as_(network, A, "assistant")
    assistant.select_option("#recipient", B)
    letter = assistant.locator("#existing option", has_text=CDA_TITLE).get_attribute("value")
    assistant.select_option("#existing", letter)
    assistant.locator("form.card button[type=submit]").click()
    assistant.wait_for_url("**/ui/sent")
    newest = assistant.locator("#sent tbody tr").first
    assert NAMES[B] in newest.inner_text() and "Vermeulen" in newest.inner_text()


CDA = SHARED / "c-cda" / "documents" / "CCD" / "CCD_1" / "CCD.XML"
CDA_TITLE = "Samenvatting huisarts (CCD)"
# HL7's unstructured CDA sample: the same PDF, embedded base64 in a nonXMLBody.
EMBEDDING_CDA = PDF.parent / "Unstructured_Document_embed.xml"


def store_cda(server: LiveServer, network: Network, title: str, path: Path) -> str:
    """A real C-CDA document filed by hospital A for the patient; returns its id."""
    with server.client(network.holder) as fhir:
        patient = fhir.get("/Patient", params={"identifier": f"{BSN_SYSTEM}|{network.bsn}"}).json()[
            "entry"
        ][0]["resource"]
        answer = fhir.post(
            "/DocumentReference",
            json={
                "resourceType": "DocumentReference",
                "status": "current",
                "description": title,
                "subject": {"reference": f"Patient/{patient['id']}"},
                "date": "2026-09-01T10:00:00+02:00",
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/hl7-v3+xml",
                            "data": base64.b64encode(path.read_bytes()).decode(),
                        }
                    }
                ],
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


def test_one_view_of_the_record_is_one_audited_search(
    network: Network, browsers: Browsers, server: LiveServer
) -> None:
    """Every search of the patient's record in one page view lands in one AuditEvent per holder
    and basis (here: A's own data), so that the DPO reads one line per view."""
    page = browsers.as_(network, A, "clinician")
    page.goto(network.url + "/ui/patients")
    page.fill("#bsn", network.bsn)
    with page.expect_response(lambda r: r.url.endswith("/ui/patient")) as shown:
        page.locator("form.card button[type=submit]").click()
    request_id = shown.value.headers["x-request-id"]
    dpo = off_loop(server.person, network.holder, f"dpo-{request_id[:8]}", "dpo")
    with dpo:
        found = dpo.get(
            "/AuditEvent",
            params={"patient": f"{BSN_SYSTEM}|{network.bsn}", "_count": "1000"},
        ).json()
    of_view = [
        e["resource"]
        for e in found.get("entry", [])
        if any(
            (x.get("what") or {}).get("identifier", {}).get("value") == request_id
            for x in e["resource"].get("entity", [])
            if x.get("type", {}).get("code") == "XrequestId"
        )
    ]
    searches = [e for e in of_view if e["subtype"][0]["code"] == "search-type"]
    assert len(searches) == 1, [e["subtype"] for e in of_view]
    queries = [x.get("query") for x in searches[0]["entity"] if x.get("query")]
    assert queries  # the searches it stands for, as BALP asks (never their results)


def test_english_toggle_and_a_refused_upload(network: Network, browsers: Browsers) -> None:
    page = browsers.as_(network, A, "assistant")
    page.goto(network.url + "/ui/sent")
    sent_before = page.locator("#sent tbody tr[data-sent]").count()
    page.goto(network.url + "/ui/send")
    page.get_by_role("link", name="English").click()
    page.wait_for_url("**/ui/send")
    assert page.locator("h1").inner_text() == "Send a document"
    assert page.locator("html").get_attribute("lang") == "en"
    # Not a PDF: refused with a message, nothing sent.
    page.select_option("#recipient", B)
    page.fill("#bsn", network.bsn)
    page.set_input_files(
        "#file",
        files=[{"name": "brief.pdf", "mimeType": "application/pdf", "buffer": b"<html>no</html>"}],
    )
    page.locator("form.card button[type=submit]").click()
    assert page.locator("main .alert").inner_text() == "Choose a PDF file."
    assert page.locator("#recipient").input_value() == B  # what was filled in stays
    # An invalid BSN: refused before anything is stored.
    page.fill("#bsn", "123456789")
    page.set_input_files("#file", str(PDF))
    page.locator("form.card button[type=submit]").click()
    assert "not a valid BSN" in page.locator("main .alert").inner_text()
    page.get_by_role("link", name="Nederlands").click()
    assert page.locator("html").get_attribute("lang") == "nl"
    page.goto(network.url + "/ui/sent")
    assert page.locator("#sent tbody tr[data-sent]").count() == sent_before  # nothing went out
