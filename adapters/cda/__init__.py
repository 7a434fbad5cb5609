"""CDA R2 / C-CDA R2.1 documents → FHIR R4 transaction Bundle.

A document becomes: the Patient of its recordTarget (a BSN, root 2.16.840.1.113883.2.4.6.3,
checked with the elfproef), a DocumentReference that stores the original XML unchanged as a
Binary, and — for structured bodies — the entries of the recognised sections (see ``sections``):
Condition, AllergyIntolerance, MedicationStatement, Observation and Procedure, each identified by
its entry id so that a re-sent document does not duplicate them. An unstructured body
(nonXMLBody) with embedded base64 content (typically a PDF) adds that content as a second
Binary, byte-identical to what was embedded.

Parsing is safe (``adapters._safe_xml``): no DTD, no entities, no network, bounded size and depth.
Input whose root is not ``{urn:hl7-org:v3}ClinicalDocument`` (for instance a header snippet) is
refused with ``UnsupportedInput``.
"""

from __future__ import annotations

from lxml import etree

from .._bundle import TransactionBuilder, add_document
from .._errors import UnsupportedInput
from .._model import Conversion, IssueLog, SourceInfo
from .._safe_xml import parse_xml
from .datatypes import NS, CdaContext, q
from .header import (
    CDA_MEDIA_TYPE,
    IHE_FORMAT_SYSTEM,
    attachment_details,
    document_reference,
    embedded_content,
    format_coding,
    map_patient,
)
from .sections import map_sections

__all__ = ["convert_cda"]

_MIME_SUFFICIENT = {"system": IHE_FORMAT_SYSTEM, "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient"}


def convert_cda(data: bytes, source: SourceInfo) -> Conversion:
    """Map one CDA document (bytes of the XML file) to a transaction Bundle."""
    root = parse_xml(data, "CDA document")
    if root.tag != q("ClinicalDocument"):
        name = etree.QName(root)
        raise UnsupportedInput(
            f"not a CDA document: root element is <{name.localname}> in namespace "
            f"{name.namespace or '(none)'}, expected ClinicalDocument in urn:hl7-org:v3",
            location="/",
        )
    issues = IssueLog()
    builder = TransactionBuilder(issues)
    ctx = CdaContext(root, source, issues, builder)
    ctx.patient_url = builder.add_patient(
        map_patient(ctx), location="/ClinicalDocument/recordTarget"
    )
    document = document_reference(ctx)
    details = attachment_details(ctx)
    structured = root.find("h:component/h:structuredBody", NS)
    unstructured = root.find("h:component/h:nonXMLBody", NS)
    xml_format = format_coding(ctx, structured=unstructured is None)
    contents = [
        (data, CDA_MEDIA_TYPE, {**details, **({"format": xml_format} if xml_format else {})})
    ]
    if unstructured is not None:
        embedded = embedded_content(ctx, unstructured)
        if embedded is not None:
            content, media = embedded
            extra = {k: v for k, v in details.items() if k != "language"}
            contents.append((content, media, {**extra, "format": _MIME_SUFFICIENT}))
    elif structured is not None:
        map_sections(ctx, structured)
    else:
        issues.warning("/ClinicalDocument/component", "document without a body")
    add_document(builder, document, contents, location="/ClinicalDocument/id")
    return Conversion("cda", builder.build(), issues.items, sources=builder.sources)
