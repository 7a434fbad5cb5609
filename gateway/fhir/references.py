"""Resolve the local references of a transaction Bundle to the ids the server assigns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    """Replace every string equal to a key of ``mapping`` (e.g. ``urn:uuid:…``) in place.

    Any string element, not only ``Reference.reference``: MHD points ``attachment.url`` at a
    Binary's full URL too. Nested Bundles keep their own full URLs, so we do not descend into them.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                if value in mapping:
                    node[key] = mapping[value]
            elif not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
                rewrite_references(value, mapping)
    elif isinstance(node, list):
        for position, value in enumerate(node):
            if isinstance(value, str):
                if value in mapping:
                    node[position] = mapping[value]
            else:
                rewrite_references(value, mapping)
    return node


def full_url_aliases(full_url: str) -> list[str]:
    """The strings that refer to a bundle entry: its fullUrl, and for a RESTful fullUrl
    ``[base]/Type/id`` also the relative ``Type/id`` (FHIR resolves relative references in a
    bundle against the base of the entry's fullUrl)."""
    aliases = [full_url]
    if full_url.startswith(("http://", "https://")):
        parts = full_url.rstrip("/").split("/")
        if len(parts) >= 5 and parts[-2][:1].isupper():
            aliases.append(f"{parts[-2]}/{parts[-1]}")
    return aliases


def local_references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every ``Reference.reference`` that can only name an entry of the
    Bundle it is in (``urn:uuid:…``); not inside nested Bundles."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "reference" and isinstance(value, str) and value.startswith("urn:uuid:"):
                yield where, value
            elif isinstance(value, list | dict) and not (
                isinstance(value, dict) and value.get("resourceType") == "Bundle"
            ):
                yield from local_references(value, where)
    elif isinstance(node, list):
        for position, value in enumerate(node):
            yield from local_references(value, f"{path}[{position}]")
