"""Dutch identifier systems: the BSN check (elfproef) and the legacy OID forms of NamingSystems.

Legacy data writes the BSN, URA and AGB systems as ``urn:oid:`` URIs; the gateway accepts them.
ITI-65 and the adapters store the ``http://fhir.nl`` form; the REST API stores a resource as sent
(it reads back unchanged), and its search and patient key take either form as the same BSN.
The elfproef is the adapters' (``is_valid_bsn``): one rule for every way in.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapters import is_valid_bsn

BSN = "http://fhir.nl/fhir/NamingSystem/bsn"
URA = "http://fhir.nl/fhir/NamingSystem/ura"
AGB = "http://fhir.nl/fhir/NamingSystem/agb-z"
LEGACY_SYSTEMS = {
    "urn:oid:2.16.840.1.113883.2.4.6.3": BSN,
    "urn:oid:2.16.528.1.1007.3.3": URA,
    "urn:oid:2.16.840.1.113883.2.4.6.1": AGB,
}


def normalized_system(system: str) -> str:
    """The ``http://fhir.nl`` URI of a legacy OID system; other systems unchanged."""
    return LEGACY_SYSTEMS.get(system, system)


def normalize_identifiers(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """Rewrite legacy systems in place; returns (path, value) of every invalid BSN found."""
    return _checked_identifiers(resource, rewrite=True)


def invalid_bsns(resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, value) of every identifier in a BSN system, legacy or not, that fails the
    elfproef; the resource is left as it is."""
    return _checked_identifiers(resource, rewrite=False)


def _checked_identifiers(resource: dict[str, Any], *, rewrite: bool) -> list[tuple[str, str]]:
    invalid: list[tuple[str, str]] = []
    for path, identifier in _identifiers(resource, resource.get("resourceType", "")):
        system = identifier.get("system")
        if isinstance(system, str) and system in LEGACY_SYSTEMS:
            system = LEGACY_SYSTEMS[system]
            if rewrite:
                identifier["system"] = system
        value = identifier.get("value")
        if system == BSN and isinstance(value, str) and not is_valid_bsn(value):
            invalid.append((path, value))
    return invalid


def bsn_of(resource: dict[str, Any]) -> str | None:
    """The BSN among a Patient's identifiers, if any."""
    for identifier in resource.get("identifier") or []:
        if isinstance(identifier, dict) and normalized_system(str(identifier.get("system"))) == BSN:
            value = identifier.get("value")
            return value if isinstance(value, str) else None
    return None


def _identifiers(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Identifier: elements named ``identifier`` or ``…Identifier`` (``masterIdentifier``,
    an extension's ``valueIdentifier``), ``Reference.identifier`` among them."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            if key == "identifier" or key.endswith("Identifier"):
                for position, item in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(item, dict):
                        yield (f"{where}[{position}]" if isinstance(value, list) else where), item
            if isinstance(value, dict | list):
                yield from _identifiers(value, where)
    elif isinstance(node, list):
        for position, value in enumerate(node):
            yield from _identifiers(value, f"{path}[{position}]")
