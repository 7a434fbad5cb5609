"""HTTP conditional and partial retrieval of a document's raw content (RFC 9110 §13, §14):
``ETag`` and ``If-None-Match`` so that a client that holds the document need not fetch it
again, and one byte range (``Range: bytes=…``) so that an interrupted download of a large
document resumes where it stopped. Written here: Starlette parses neither for a streamed body."""

from __future__ import annotations

import re

from gateway.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^\s*bytes\s*=\s*(?P<first>\d*)\s*-\s*(?P<last>\d*)\s*$", re.IGNORECASE)


def content_etag(sha256: str) -> str:
    """A strong entity tag: the content never changes under its Binary (write-once)."""
    return f'"{sha256}"'


def matches_none(if_none_match: str | None, etag: str) -> bool:
    """Whether ``If-None-Match`` names the current content (then 304 Not Modified)."""
    if if_none_match is None:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags  # weak comparison (RFC 9110 §13.1.2)


def requested_span(
    range_header: str | None, if_range: str | None, etag: str, size: int
) -> tuple[int, int] | None:
    """The first and last byte a ``Range`` header asks for, or None for the whole content: no
    header, a form this server does not serve (several ranges, other units: RFC 9110 lets it
    answer 200 with everything), or an ``If-Range`` that names other content. A range that
    starts past the end is a 416."""
    if range_header is None or (if_range is not None and if_range.strip() != etag):
        return None
    match = _RANGE.match(range_header)
    if match is None or (not match["first"] and not match["last"]):
        return None
    if not match["first"]:  # the last N bytes
        suffix = int(match["last"])
        if suffix == 0:
            raise _unsatisfiable(size)
        return max(0, size - suffix), size - 1
    first = int(match["first"])
    last = int(match["last"]) if match["last"] else None
    if last is not None and last < first:
        return None  # invalid: ignored, as RFC 9110 §14.1.1 asks
    if first >= size:
        raise _unsatisfiable(size)
    return first, size - 1 if last is None else min(last, size - 1)


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The document has {size} bytes: the requested range lies beyond it",
        headers={"Content-Range": f"bytes */{size}"},
    )
