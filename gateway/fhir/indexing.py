"""Turn a resource into rows of the search index, one table per parameter kind."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from gateway.fhir.dates import MAX_US, MIN_US, date_range
from gateway.fhir.dutch_identifiers import normalized_system
from gateway.fhir.search_params import SearchParamRegistry, parse_reference

MAX_INDEXED_CHARS = 512
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


@dataclass
class IndexRows:
    """Index rows of one resource, keyed by the index table kind."""

    string: list[dict[str, Any]] = field(default_factory=list)
    token: list[dict[str, Any]] = field(default_factory=list)
    date: list[dict[str, Any]] = field(default_factory=list)
    reference: list[dict[str, Any]] = field(default_factory=list)

    def by_kind(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "string": self.string,
            "token": self.token,
            "date": self.date,
            "reference": self.reference,
        }


def _clean(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; it never matters for search.
    return text.replace("\x00", "")[:MAX_INDEXED_CHARS]


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (``Müller`` → ``muller``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def index_resource(resource: dict[str, Any], registry: SearchParamRegistry) -> IndexRows:
    """Extract every indexed search parameter's values from ``resource``."""
    rows = IndexRows()
    resource_type = resource["resourceType"]
    for param in registry.indexed(resource_type):
        values = param.extract(resource)
        if not values:
            continue
        base = {"res_type": resource_type, "param": param.code}
        if param.type == "string":
            for text in {t for v in values for t in string_values(v)}:
                rows.string.append(
                    base | {"value_norm": _clean(normalize(text)), "value": _clean(text)}
                )
        elif param.type in ("token", "uri"):
            for system, code in {t for v in values for t in token_values(v)}:
                rows.token.append(
                    base | {"system": system and _clean(system), "code": _clean(code)}
                )
        elif param.type == "date":
            for lo, hi in {r for v in values for r in date_values(v)}:
                rows.date.append(base | {"lo": lo, "hi": hi})
        elif param.type == "reference":
            for target_type, target_id, url in {r for v in values for r in reference_values(v)}:
                rows.reference.append(
                    base | {"target_type": target_type, "target_id": target_id, "url": url}
                )
    return rows


def string_values(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        out: list[str] = []
        for key in parts:
            part = value.get(key)
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, list):
                out.extend(p for p in part if isinstance(p, str))
        if not out and isinstance(value.get("text"), str):
            out.append(value["text"])
        return out
    return []


def token_values(value: Any) -> list[tuple[str | None, str]]:
    if isinstance(value, bool):
        return [(None, "true" if value else "false")]
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return []
    if isinstance(value.get("coding"), list):  # CodeableConcept
        return [t for coding in value["coding"] for t in token_values(coding)]
    system = value.get("system") if isinstance(value.get("system"), str) else None
    if system is not None:  # legacy OID forms of BSN, URA, AGB are found by their URI too
        system = normalized_system(system)
    for key in ("code", "value"):  # Coding; Identifier and ContactPoint
        if isinstance(value.get(key), str):
            return [(system, value[key])]
    return []


def date_values(value: Any) -> list[tuple[int, int]]:
    if isinstance(value, str):
        found = date_range(value)
        return [found] if found else []
    if isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            start = date_range(value["start"]) if isinstance(value.get("start"), str) else None
            end = date_range(value["end"]) if isinstance(value.get("end"), str) else None
            return [(start[0] if start else MIN_US, end[1] if end else MAX_US)]
        if isinstance(value.get("event"), list):  # Timing
            return [r for e in value["event"] for r in date_values(e)]
    return []


def reference_values(value: Any) -> list[tuple[str | None, str | None, str | None]]:
    reference = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(reference, str) or reference.startswith("#"):
        return []
    parsed = parse_reference(reference)
    if parsed is None:  # urn:uuid, canonical or other absolute URL
        return [(None, None, _clean(reference))]
    target_type, target_id, base = parsed
    return [(target_type, target_id, _clean(reference) if base else None)]
