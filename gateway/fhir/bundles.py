"""Assemble Bundles from stored resource bytes without re-parsing them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson

from gateway.fhir.dates import instant


@dataclass(frozen=True)
class BundleEntry:
    full_url: str | None
    resource: bytes | None = None  # stored JSON bytes
    search_mode: str | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None


def bundle_bytes(
    bundle_type: str,
    entries: Iterable[BundleEntry],
    *,
    bundle_id: str | None = None,
    total: int | None = None,
    links: list[tuple[str, str]] = (),  # type: ignore[assignment]
    timestamp_us: int | None = None,
) -> bytes:
    """A Bundle's JSON, splicing each entry's stored resource bytes in unchanged."""
    head: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        head["id"] = bundle_id
    if timestamp_us is not None:
        head["meta"] = {"lastUpdated": instant(timestamp_us)}
    head["type"] = bundle_type
    if timestamp_us is not None:
        head["timestamp"] = instant(timestamp_us)
    if total is not None:
        head["total"] = total
    if links:
        head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    parts = [orjson.dumps(head)[:-1], b',"entry":[']
    first = True
    for entry in entries:
        if not first:
            parts.append(b",")
        first = False
        parts.append(_entry_bytes(entry))
    parts.append(b"]}")
    if first:  # no entries: FHIR forbids an empty array
        return orjson.dumps(head)
    return b"".join(parts)


def _entry_bytes(entry: BundleEntry) -> bytes:
    fields: dict[str, Any] = {}
    if entry.full_url:
        fields["fullUrl"] = entry.full_url
    out = orjson.dumps(fields)[:-1]
    pieces = [out]
    if entry.resource is not None:
        pieces.append(b',"resource":' if fields else b'"resource":')
        pieces.append(entry.resource)
    tail: dict[str, Any] = {}
    if entry.search_mode:
        tail["search"] = {"mode": entry.search_mode}
    if entry.request:
        tail["request"] = entry.request
    if entry.response:
        tail["response"] = entry.response
    if tail:
        tail_bytes = orjson.dumps(tail)[1:-1]
        pieces.append(b"," + tail_bytes if (fields or entry.resource is not None) else tail_bytes)
    pieces.append(b"}")
    return b"".join(pieces)


def page_url(base: str, params: list[tuple[str, str]]) -> str:
    """A link URL that repeats the query's parameters."""
    return f"{base}?{urlencode(params)}" if params else base
