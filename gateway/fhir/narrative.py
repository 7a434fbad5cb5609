"""The narrative rules of FHIR R4 (invariants txt-1 and txt-2) for ``Narrative.div``.

A narrative is XHTML that other hospitals' viewers show as it is, so active content in it would
run there: txt-1 allows only the basic formatting elements of HTML 4.0 (chapters 7-11 and 15),
``<a>`` and images, and no scripts, forms, frames, objects, external stylesheets, base or link
elements; txt-2 asks for some content. Besides the element names, this refuses what would run
without a script element: event attributes (``onclick``), ``javascript:`` and other non-display
URL schemes in ``href``/``src``, and CSS ``expression()`` or ``url()`` in ``style``.
"""

from __future__ import annotations

import re

from lxml import etree

XHTML = "http://www.w3.org/1999/xhtml"
_XML = "http://www.w3.org/XML/1998/namespace"

# HTML 4.0 chapters 7-11 and 15 (text, lists, tables, formatting), <a> and images.
_ELEMENTS = frozenset(
    {
        *("div", "p", "br", "hr", "span", "pre", "address", "blockquote", "bdo"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
        *("a", "img", "map", "area"),
        *("b", "i", "em", "strong", "small", "big", "tt", "u", "s", "strike", "font", "center"),
        *("dfn", "q", "var", "abbr", "acronym", "cite", "code", "samp", "kbd", "sub", "sup"),
        *("ins", "del"),
        *("ul", "ol", "li", "dl", "dt", "dd"),
        *("table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"),
    }
)
_ATTRIBUTES = frozenset(
    {
        *("id", "class", "style", "title", "lang", "dir", "accesskey", "tabindex"),
        *("href", "name", "hreflang", "rel", "rev", "type", "charset", "shape", "coords"),
        *("src", "alt", "longdesc", "usemap", "ismap", "height", "width", "border"),
        *("hspace", "vspace", "cite", "datetime", "start", "value", "compact", "clear"),
        *("summary", "frame", "rules", "cellspacing", "cellpadding", "span", "align"),
        *("valign", "char", "charoff", "abbr", "axis", "headers", "scope", "rowspan"),
        *("colspan", "nowrap", "bgcolor", "color", "face", "size", "noshade"),
    }
)
_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "usemap", "cite"})
# A URL may be relative, a fragment, or one of these schemes; data: only for images.
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*):")
_URL_NOISE = re.compile(r"[\t\n\r]")
_LEADING = "".join(chr(c) for c in range(0x21))
_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel", "urn"})
_ACTIVE_CSS = re.compile(r"expression\s*\(|url\s*\(|javascript:|@import|behavior\s*:", re.I)
_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
)


def narrative_problem(div: str) -> str | None:
    """What breaks txt-1 or txt-2 in a ``Narrative.div`` value, or None when it is allowed."""
    try:
        root = etree.fromstring(div.encode(), _PARSER)
    except etree.XMLSyntaxError as exc:
        return f"is not well-formed XHTML ({exc}); only XML's own entities such as &amp; exist"
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        return "may not carry a DOCTYPE"
    if root.tag != f"{{{XHTML}}}div":
        return f"must be a <div> in the XHTML namespace {XHTML} (txt-1)"
    has_image = False
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # a comment
        namespace, _, name = element.tag[1:].partition("}")
        if namespace != XHTML or name not in _ELEMENTS:
            shown = name if namespace == XHTML else element.tag
            return (
                f"may not contain <{shown}>: a narrative holds only basic HTML formatting, "
                "no scripts, forms, frames, objects, styles or links (txt-1)"
            )
        has_image = has_image or name == "img"
        for attribute, value in element.attrib.items():
            problem = _attribute_problem(name, str(attribute), str(value))
            if problem:
                return problem
    if not has_image and not "".join(root.itertext()).strip():
        return "has no content: a narrative needs some text or an image (txt-2)"
    return None


def _attribute_problem(element: str, attribute: str, value: str) -> str | None:
    if attribute.startswith("{"):
        namespace, _, name = attribute[1:].partition("}")
        if namespace == _XML and name in ("lang", "space"):
            return None
        return f"<{element}> may not carry the attribute {attribute} (txt-1)"
    if attribute not in _ATTRIBUTES:
        return f"<{element}> may not carry the attribute '{attribute}' (txt-1)"
    if attribute in _URL_ATTRIBUTES:
        # Browsers drop tabs and line breaks anywhere in a URL and controls before it.
        scheme = _SCHEME.match(_URL_NOISE.sub("", value).lstrip(_LEADING))
        named = scheme.group(1).lower() if scheme else None
        image_data = named == "data" and element == "img" and attribute == "src"
        if named is not None and named not in _SAFE_SCHEMES and not image_data:
            return f"<{element} {attribute}> may not use the URL scheme '{named}:' (txt-1)"
    if attribute == "style" and _ACTIVE_CSS.search(value):
        return f"<{element} style> may not load or compute content (url(), expression()) (txt-1)"
    return None
