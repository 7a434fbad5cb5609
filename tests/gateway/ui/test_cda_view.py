"""gateway.ui.cda_view: real C-CDA documents render; hostile ones come out inert.

Sample files: HL7/C-CDA-Examples (CC0-1.0) and microsoft/FHIR-Converter (MIT) as listed in
../shared/data/MANIFEST.md, used in place.
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import pytest

from gateway.ui.cda_view import CdaSection, CdaView, CdaViewError, render_cda

C_CDA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "c-cda"
STRUCTURED = sorted(
    path for path in (C_CDA / "documents").rglob("*") if path.suffix.lower() == ".xml"
)
CONVERTER_SAMPLES = [
    C_CDA / "microsoft-fhir-converter" / name
    for name in ("170.314B2_Amb_CCD.ccda", "Patient-1.ccda")
]
EMBEDDED_PDF = C_CDA / "unstructured" / "CDA_with_Embedded_PDF_1"
REFERENCED_PDF = C_CDA / "unstructured" / "CDA_reference_PDF"

# Everything cda_view may emit, and the only attributes it may copy.
HTML_TAGS = {"p", "span", "br", "ol", "ul", "li", "table", "thead", "tbody", "tfoot", "tr"}
HTML_TAGS |= {"th", "td", "caption", "sub", "sup", "small", "strong", "em", "u"}


class _Tags(HTMLParser):
    """The start tags of an HTML fragment with their attributes, as a browser tokenises them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_allow_listed(html: str, extra_tags: frozenset[str] = frozenset()) -> None:
    for tag, attrs in _Tags(html).found:
        assert tag in HTML_TAGS | extra_tags, f"<{tag}> in {html!r}"
        for name, value in attrs:
            assert name in {"colspan", "rowspan"} and value and value.isdigit(), (tag, name, value)


def all_sections(sections: tuple[CdaSection, ...]) -> list[CdaSection]:
    return [s for section in sections for s in (section, *all_sections(section.sections))]


def cda(body: str, header: str = "<title>Test</title>") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ClinicalDocument xmlns="urn:hl7-org:v3">{header}<component>{body}</component>'
        "</ClinicalDocument>"
    ).encode()


def test_the_sample_files_are_there() -> None:
    assert C_CDA.is_dir(), C_CDA
    assert len(STRUCTURED) == 7, STRUCTURED
    assert all(path.is_file() for path in CONVERTER_SAMPLES)


@pytest.mark.parametrize(
    "path", STRUCTURED + CONVERTER_SAMPLES, ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_structured_documents_render(path: Path) -> None:
    view = render_cda(path.read_bytes())
    assert view.title
    assert view.patient
    assert view.embedded is None and view.embedded_text is None
    sections = all_sections(view.sections)
    assert any("<table>" in s.body or "<p>" in s.body for s in sections)
    assert all(s.title for s in sections)
    for section in sections:
        assert_allow_listed(str(section.body))


@pytest.mark.parametrize(
    ("path", "header"),
    [
        (
            "documents/Discharge_Summary/Discharge_Summary.xml",
            (
                "Community Health and Hospitals: Discharge Summary",
                "2014-09-17 19:04 -05:00",
                "Isabella Jones",
                "Henry Seven",  # the first author; the hospital is the second one
                "Community Health and Hospitals",
            ),
        ),
        (
            "microsoft-fhir-converter/170.314B2_Amb_CCD.ccda",
            (
                "Continuity of Care Document",
                "2013-01-30 08:00:51 -05:00",
                "Adam Everyman",
                "Samir Khan",  # the clinic is the second author (none of the samples has both)
                "Get Well Clinic",
            ),
        ),
    ],
    ids=["discharge-summary", "amb-ccd"],
)
def test_header_fields(path: str, header: tuple[str, ...]) -> None:
    view = render_cda((C_CDA / path).read_bytes())
    assert (view.title, view.effective, view.patient, view.author, view.custodian) == header


@pytest.mark.parametrize(
    ("assigned", "shown"),
    [
        (
            "<assignedPerson><name><prefix>dr.</prefix><given>Anna</given>"
            "<given qualifier='CL'>Ans</given><family>de Vries</family></name></assignedPerson>"
            "<representedOrganization><name>Ziekenhuis Oost</name></representedOrganization>",
            "Anna de Vries, Ziekenhuis Oost",
        ),
        (
            "<assignedAuthoringDevice><softwareName>EPD</softwareName></assignedAuthoringDevice>"
            "<representedOrganization><name>Ziekenhuis Oost</name></representedOrganization>",
            "Ziekenhuis Oost",
        ),
        ("<assignedPerson><name>A. Bakker</name></assignedPerson>", "A. Bakker"),
    ],
    ids=["person-and-organisation", "device", "unstructured-name"],
)
def test_author(assigned: str, shown: str) -> None:
    header = f"<title>T</title><author><assignedAuthor>{assigned}</assignedAuthor></author>"
    assert render_cda(cda("<structuredBody/>", header)).author == shown


def test_nested_sections_are_kept() -> None:
    view = render_cda((C_CDA / "documents/Referral_Note/Referral_Note.xml").read_bytes())
    (exam,) = [s for s in view.sections if s.title == "Physical Examination"]
    assert [s.title for s in exam.sections] == ["SKIN, PHYSICAL FINDING"]
    assert "<ol>" in exam.sections[0].body


def test_link_html_keeps_its_text_but_never_its_href() -> None:
    view = render_cda((C_CDA / "documents/CCD/CCD_1/CCD.XML").read_bytes())
    (directives,) = [s for s in view.sections if s.title == "ADVANCE DIRECTIVES"]
    assert "Advance directive" in directives.body
    assert "AdvanceDirective.b50b7910.pdf" not in directives.body
    assert "href" not in directives.body


def test_rowspan_and_style_codes_survive() -> None:
    view = render_cda(CONVERTER_SAMPLES[0].read_bytes())
    bodies = "".join(s.body for s in all_sections(view.sections))
    assert 'rowspan="' in bodies
    assert "<strong>" in bodies


def test_embedded_pdf_is_decoded() -> None:
    view = render_cda((EMBEDDED_PDF / "Unstructured_Document_embed.xml").read_bytes())
    assert view.embedded is not None
    media_type, content = view.embedded
    assert media_type == "application/pdf"
    assert content.startswith(b"%PDF")
    # The sample folder carries the PDF that was embedded: byte for byte the same.
    assert content == (EMBEDDED_PDF / "C-CDA_R2_UD_sample.pdf").read_bytes()
    assert view.embedded_text is None
    assert view.sections == ()
    assert view.title and view.patient


def test_referenced_pdf_is_not_fetched() -> None:
    view = render_cda((REFERENCED_PDF / "Unstructured_Document_reference.xml").read_bytes())
    assert view.embedded is None and view.embedded_text is None
    assert view.title


def test_plain_text_body() -> None:
    body = '<nonXMLBody><text mediaType="text/plain">  Patiënt <b>stabiel</b> ontslagen.\n</text></nonXMLBody>'
    view = render_cda(cda(body))
    assert view.embedded is None
    assert view.embedded_text == "Patiënt stabiel ontslagen."


def test_active_embedded_content_is_not_labelled_as_such() -> None:
    payload = b"<script>alert(1)</script>"
    body = (
        '<nonXMLBody><text mediaType="text/html" representation="B64">'
        f"{base64.b64encode(payload).decode()}</text></nonXMLBody>"
    )
    assert render_cda(cda(body)).embedded == ("application/octet-stream", payload)


def test_bad_base64_is_refused() -> None:
    body = '<nonXMLBody><text mediaType="application/pdf" representation="B64">JVBER*i0x</text></nonXMLBody>'
    with pytest.raises(CdaViewError, match="base64"):
        render_cda(cda(body))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("202405011030", "2024-05-01 10:30"),
        ("20240501103015+0200", "2024-05-01 10:30:15 +02:00"),
        ("20240501", "2024-05-01"),
        ("20241399", "20241399"),
        ("gisteren", "gisteren"),
    ],
)
def test_effective_time(value: str, shown: str) -> None:
    header = f'<title>T</title><effectiveTime value="{value}"/>'
    assert render_cda(cda("<structuredBody/>", header)).effective == shown


def test_title_falls_back_to_the_code() -> None:
    header = '<code code="18842-5" displayName="Discharge summary"/>'
    body = '<structuredBody><component><section><code displayName="Medicatie"/><text>x</text></section></component></structuredBody>'
    view = render_cda(cda(body, header))
    assert view.title == "Discharge summary"
    assert view.sections[0].title == "Medicatie"


def test_spans_only_as_small_numbers() -> None:
    body = (
        "<structuredBody><component><section><title>T</title><text><table><tbody><tr>"
        '<td colspan="2">a</td><td colspan="999">b</td><td rowspan="2 onclick=x">c</td>'
        "</tr></tbody></table></text></section></component></structuredBody>"
    )
    html = str(render_cda(cda(body)).sections[0].body)
    assert '<td colspan="2">a</td><td>b</td><td>c</td>' in html


HOSTILE = """<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xhtml="http://www.w3.org/1999/xhtml"
    onload="alert(1)">
  <title>Ontslagbrief <script>alert(2)</script></title>
  <recordTarget><patientRole><patient><name>
    <given>&lt;img src=x onerror=alert(3)&gt;</given><family>Jansen</family>
  </name></patient></patientRole></recordTarget>
  <component><structuredBody>
    <component><section>
      <title>Medicatie</title>
      <text onload="alert(4)">
        <paragraph onclick="alert(5)" styleCode="Bold">Paracetamol <script>alert(6)</script></paragraph>
        <xhtml:script type="text/javascript">alert(7)</xhtml:script>
        <linkHtml href="javascript:alert(8)" onclick="alert(9)">bijsluiter</linkHtml>
        <content><![CDATA[<script>alert(10)</script><img src=x onerror=alert(11)>]]></content>
        <table border="1" onmouseover="alert(12)"><tbody><tr>
          <td style="background:url(javascript:alert(13))" onclick="alert(14)">500 mg</td>
        </tr></tbody></table>
        <renderMultiMedia referencedObject="MM1"/>
        <xhtml:a href="javascript:alert(15)">klik</xhtml:a>
        <xhtml:iframe src="https://evil.example/"/>
        <xhtml:body onload="alert(16)"><xhtml:svg onload="alert(17)"/></xhtml:body>
      </text>
      <component><section>
        <title>&lt;script&gt;alert(18)&lt;/script&gt;</title>
        <text><list listType="ordered" onclick="alert(19)"><item>één</item></list></text>
      </section></component>
    </section></component>
  </structuredBody></component>
</ClinicalDocument>
""".encode()

PAGE = jinja2.Environment(autoescape=True).from_string(
    "<h1>{{ view.title }}</h1><div>{{ view.patient }}</div>"
    "{% for s in view.sections recursive %}"
    "<section><h2>{{ s.title }}</h2>{{ s.body }}{{ loop(s.sections) }}</section>"
    "{% endfor %}"
)


def test_hostile_narrative_comes_out_inert() -> None:
    view = render_cda(HOSTILE)
    bodies = [str(s.body) for s in all_sections(view.sections)]
    assert len(bodies) == 2
    for body in bodies:
        assert_allow_listed(body)
        for live in ("<script", "<img", "<iframe", "<svg", "<a ", "onclick", "onload", "href"):
            assert live not in body
        assert "javascript:" not in body
    medication = bodies[0]
    # CDATA arrives as text: shown, escaped, harmless.
    assert "&lt;script&gt;alert(10)&lt;/script&gt;&lt;img src=x onerror=alert(11)&gt;" in medication
    assert "<p><strong>Paracetamol alert(6)</strong></p>" in medication
    assert "bijsluiter" in medication and "[afbeelding niet getoond]" in medication
    assert "<ol><li>één</li></ol>" in bodies[1]


def test_hostile_header_is_plain_text_for_an_autoescaping_template() -> None:
    view = render_cda(HOSTILE)
    assert isinstance(view, CdaView)
    assert view.patient == "<img src=x onerror=alert(3)> Jansen"  # text, not markup
    page = PAGE.render(view=view)
    assert_allow_listed(page, frozenset({"h1", "h2", "div", "section"}))
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(18)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(3)&gt; Jansen" in page


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?>\n<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>',
        b'<!-- a comment first --><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol2;</title></ClinicalDocument>',
    ],
    ids=["xxe", "entity-expansion"],
)
def test_dtds_are_refused(data: bytes) -> None:
    with pytest.raises(CdaViewError) as caught:
        render_cda(data)
    assert "DTD" in str(caught.value)
    assert "root:" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        (C_CDA / "snippets" / "RTF_Note_(C-CDA_R2.1).xml").read_bytes(),
        (C_CDA / "snippets" / "Multiple_Patient_Identifiers_(C-CDAR2.1).xml").read_bytes(),
        b"<ClinicalDocument><title>no namespace</title></ClinicalDocument>",
        b'<Bundle xmlns="http://hl7.org/fhir"/>',
    ],
    ids=["rtf-note-snippet", "header-snippet", "no-namespace", "fhir"],
)
def test_non_cda_xml_is_refused(data: bytes) -> None:
    with pytest.raises(CdaViewError, match="not a CDA document"):
        render_cda(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80",
        b"not xml at all",
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>cut off',
        (EMBEDDED_PDF / "C-CDA_R2_UD_sample.pdf").read_bytes(),
        # A real sample that is not namespace-well-formed (sdtc: prefix never declared).
        (C_CDA / "snippets" / "Masked_Social_Security_Number.xml").read_bytes(),
    ],
    ids=["empty", "binary", "text", "truncated", "pdf", "undeclared-prefix-snippet"],
)
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(CdaViewError) as caught:
        render_cda(data)
    assert "\n" not in str(caught.value)
