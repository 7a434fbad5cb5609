"""Parsing untrusted XML (CDA documents, FHIR XML) without the classic XML attacks.

- No DTD at all: a ``<!DOCTYPE`` in the prolog is refused before the parser sees it. That stops
  external entities (XXE: ``file:///etc/passwd``, network fetches) and entity expansion
  (billion laughs) regardless of parser settings; CDA and FHIR never need a DTD.
- The parser itself is configured defensively too: no entity resolution, no network, no DTD
  loading, and libxml2's default limits (nesting depth 256, text nodes of 10 MB), which raise
  ``UnsafeInput`` when hit.
- Input larger than ``MAX_XML_BYTES`` is refused unread.
"""

from __future__ import annotations

import re

from lxml import etree

from ._errors import MalformedInput, UnsafeInput

MAX_XML_BYTES = 20 * 1024 * 1024

_PROLOG_ITEM = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->)", re.DOTALL)
_LIMIT_MESSAGES = ("Excessive depth", "amplification", "huge", "Huge")


def safe_parser() -> etree.XMLParser:
    """A parser with entity resolution, network access and DTD loading off."""
    # A new parser per call: lxml parsers are not safe to share between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _as_utf8_prolog(data: bytes) -> bytes:
    """The start of the document in an ASCII-compatible encoding, for the DOCTYPE check."""
    head = data[:65536]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return head.decode("utf-16", errors="replace").encode("utf-8")
    return head.removeprefix(b"\xef\xbb\xbf")


def refuse_dtd(data: bytes) -> None:
    """Raise ``UnsafeInput`` when the document declares a DTD (``<!DOCTYPE`` before the root)."""
    head = _as_utf8_prolog(data)
    position = 0
    while True:
        item = _PROLOG_ITEM.match(head, position)
        if not item:
            break
        position = item.end()
    rest = head[position:].lstrip()
    if rest.startswith(b"<!DOCTYPE") or rest.startswith(b"<!ENTITY"):
        raise UnsafeInput("XML with a DTD (<!DOCTYPE) is refused: entities are not allowed")


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Parse ``data`` safely and return the root element; ``what`` names the input in errors."""
    if len(data) > MAX_XML_BYTES:
        raise UnsafeInput(f"{what} of {len(data)} bytes exceeds the {MAX_XML_BYTES} byte bound")
    refuse_dtd(data)
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        line = f"line {exc.lineno}" if exc.lineno else what
        if any(limit in message for limit in _LIMIT_MESSAGES):
            raise UnsafeInput(
                f"{what} exceeds a parser safety limit: {message}", location=line
            ) from exc
        raise MalformedInput(f"{what} is not well-formed XML: {message}", location=line) from exc
    except ValueError as exc:  # e.g. a str with an encoding declaration; bytes never get here
        raise MalformedInput(f"{what} cannot be parsed: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeInput("XML with a DTD is refused: entities are not allowed")
    return root
