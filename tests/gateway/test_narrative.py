"""A narrative (``text.div``) is XHTML that other hospitals' viewers show as it is: the gateway
holds it to FHIR's txt-1 (basic formatting only: no scripts, forms, frames, objects, event
attributes or script URLs) and txt-2 (some content). A narrative that breaks them is a 400
naming the element, and nothing is stored; the official examples' narratives all pass
(test_examples_roundtrip.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.fhir.formats import json_to_xml

XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'


def patient(div: str, family: str = "Verhalend") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "text": {"status": "generated", "div": div},
        "name": [{"family": family}],
    }


def stored(fhir, family: str) -> int:
    return fhir.get("/Patient", params={"family": family, "_summary": "count"}).json()["total"]


@pytest.mark.parametrize(
    ("div", "named"),
    [
        (f"<div {XHTML}><p>Allergie</p><script>alert(1)</script></div>", "<script>"),
        (f'<div {XHTML}><iframe src="https://example.org/"/>Brief</div>', "<iframe>"),
        (f'<div {XHTML}><form action="/x"><input name="bsn"/></form>x</div>', "<form>"),
        (f'<div {XHTML}><object data="x.swf"/>x</div>', "<object>"),
        (f'<div {XHTML}><p onclick="alert(1)">Klik</p></div>', "'onclick'"),
        (f'<div {XHTML}><a href="javascript:alert(1)">uitslag</a></div>', "'javascript:'"),
        (f'<div {XHTML}><a href=" java&#9;script:alert(1)">uitslag</a></div>', "'javascript:'"),
        (f'<div {XHTML}><img src="vbscript:x" alt="x"/></div>', "'vbscript:'"),
        (f'<div {XHTML}><p style="background:url(https://x/t.gif)">x</p></div>', "url()"),
        (f'<div {XHTML}><svg xmlns="http://www.w3.org/2000/svg"/>x</div>', "svg"),
        ("<div><p>Geen namespace</p></div>", "XHTML namespace"),
        (f"<span {XHTML}>Tekst</span>", "<div>"),
        (f"<div {XHTML}>   <p> </p></div>", "txt-2"),
        (f"<div {XHTML}>Tekst&nbsp;met entiteit</div>", "well-formed"),
        (f"<div {XHTML}><p>Niet gesloten</div>", "well-formed"),
    ],
    ids=[
        "script",
        "iframe",
        "form",
        "object",
        "event attribute",
        "javascript url",
        "javascript url with a tab and a space",
        "vbscript image",
        "css url",
        "svg",
        "no namespace",
        "not a div",
        "no content",
        "html entity",
        "not well-formed",
    ],
)
def test_a_narrative_that_breaks_txt_1_or_txt_2_is_refused(fhir, div, named):
    response = fhir.post("/Patient", json=patient(div))
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Patient.text.div"]
    assert issue["code"] in ("invariant", "structure")
    assert named in issue["diagnostics"]
    assert stored(fhir, "Verhalend") == 0


def test_active_content_is_refused_in_a_contained_resource_and_in_xml(fhir):
    div = f'<div {XHTML}><a href="javascript:alert(1)">x</a></div>'
    outer = patient(f"<div {XHTML}>Buiten</div>", family="Omhuld")
    outer["contained"] = [patient(div) | {"id": "binnen"}]
    response = fhir.post("/Patient", json=outer)
    assert response.status_code == 400, response.text
    assert response.json()["issue"][0]["expression"] == ["Patient.contained[0].text.div"]

    script = patient(f"<div {XHTML}><script>alert(1)</script>x</div>", family="Xml")
    xml = json_to_xml(json.dumps(script).encode())
    response = fhir.post("/Patient", content=xml, headers={"Content-Type": "application/fhir+xml"})
    assert response.status_code == 400, response.text
    assert "<script>" in response.text
    assert stored(fhir, "Omhuld") == 0 and stored(fhir, "Xml") == 0


def test_an_update_with_active_content_keeps_the_current_version(fhir):
    created = fhir.post("/Patient", json=patient(f"<div {XHTML}>Eerst</div>", "Bijgewerkt"))
    assert created.status_code == 201, created.text
    resource = created.json()
    resource["text"]["div"] = f'<div {XHTML}><p onmouseover="x()">Later</p></div>'
    assert fhir.put(f"/Patient/{resource['id']}", json=resource).status_code == 400
    current = fhir.get(f"/Patient/{resource['id']}").json()
    assert current["meta"]["versionId"] == "1"
    assert "Eerst" in current["text"]["div"]


def test_formatting_links_images_and_tables_are_accepted(fhir):
    div = (
        f'<div {XHTML} xml:lang="nl"><h1 class="kop">Ontslagbrief</h1>'
        '<p style="color: #333">Patiënt <b>herstelt</b> &amp; gaat <i>naar huis</i>.</p>'
        '<table border="1"><thead><tr><th scope="col">Datum</th></tr></thead>'
        '<tbody><tr><td colspan="1">2026-11-26</td></tr></tbody></table>'
        '<ul><li><a href="https://www.thuisarts.nl/">Thuisarts</a></li>'
        '<li><a href="#sectie">verderop</a></li><li><a href="mailto:poli@example.nl">mail</a></li>'
        '</ul><img src="data:image/png;base64,iVBORw0KGgo=" alt="logo"/></div>'
    )
    response = fhir.post("/Patient", json=patient(div, "Opgemaakt"))
    assert response.status_code == 201, response.text
    assert fhir.get(response.headers["Location"]).json()["text"]["div"] == div
