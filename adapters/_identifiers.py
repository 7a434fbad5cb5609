"""Dutch identifier systems: the one place where BSN, URA, AGB, UZI and BIG are recognised.

Every adapter goes through this module, so a BSN arriving as ``urn:oid:2.16.840.1.113883.2.4.6.3``
in a FHIR export, as the root of a CDA ``<id>`` or as ``NNNLD`` in HL7 v2 PID-3 ends up as the
same ``http://fhir.nl/fhir/NamingSystem/bsn`` identifier, checked with the elfproef.

Local identifiers (a hospital's own patient or visit numbers, Synthea row ids) need a system URI
that is unique per sending organisation; ``local_system`` builds it under the project namespace
``https://zorgbrug.nl/fhir/NamingSystem/<URA>/<namespace>``.
"""

from __future__ import annotations

import re

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"
URA_SYSTEM = "http://fhir.nl/fhir/NamingSystem/ura"
AGB_SYSTEM = "http://fhir.nl/fhir/NamingSystem/agb-z"
UZI_PERSON_SYSTEM = "http://fhir.nl/fhir/NamingSystem/uzi-nr-pers"
UZI_SYSTEM_SYSTEM = "http://fhir.nl/fhir/NamingSystem/uzi-nr-sys"
BIG_SYSTEM = "http://fhir.nl/fhir/NamingSystem/big"

BSN_OID = "2.16.840.1.113883.2.4.6.3"
URA_OID = "2.16.528.1.1007.3.3"
AGB_OID = "2.16.840.1.113883.2.4.6.1"

# RFC 3986 system for identifiers whose value is itself a URI (urn:oid:…, urn:uuid:…).
URI_SYSTEM = "urn:ietf:rfc:3986"

_LOCAL_BASE = "https://zorgbrug.nl/fhir/NamingSystem"

OID_TO_SYSTEM: dict[str, str] = {
    BSN_OID: BSN_SYSTEM,
    URA_OID: URA_SYSTEM,
    AGB_OID: AGB_SYSTEM,
    "2.16.528.1.1007.3.1": UZI_PERSON_SYSTEM,
    "2.16.528.1.1007.3.2": UZI_SYSTEM_SYSTEM,
    "2.16.528.1.1007.5.1": BIG_SYSTEM,
    # Well-known non-Dutch identifier systems that appear in international (C-CDA) samples.
    "2.16.840.1.113883.4.1": "http://hl7.org/fhir/sid/us-ssn",
    "2.16.840.1.113883.4.6": "http://hl7.org/fhir/sid/us-npi",
}

# HL7 v2 spellings of the same authorities (CX-4 namespace or CX-5 identifier type).
V2_BSN_TYPES = frozenset({"NNNLD"})
V2_BSN_AUTHORITIES = frozenset({"NLMINBIZA"})

_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NAMESPACE_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")
_BSN_SEPARATORS = re.compile(r"[\s.-]")


def is_oid(text: str) -> bool:
    """True when ``text`` is a dotted ISO object identifier such as ``2.16.840.1.113883.6.1``."""
    return bool(_OID.fullmatch(text))


def is_uuid(text: str) -> bool:
    return bool(_UUID.fullmatch(text))


def elfproef(digits: str) -> bool:
    """The BSN check: 9·d1 + 8·d2 + … + 2·d8 - 1·d9 is divisible by 11 (and not all zeros)."""
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit() or digits == "0" * 9:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


def normalize_bsn(value: str) -> str | None:
    """The BSN as nine digits when ``value`` is a valid BSN, else None.

    Spaces, dots and hyphens are dropped (``999.911.120``); an eight-digit number gets its leading
    zero back, as old registrations were issued without it.
    """
    digits = _BSN_SEPARATORS.sub("", value)
    if len(digits) == 8 and digits.isdigit():
        digits = "0" + digits
    return digits if elfproef(digits) else None


def system_for_oid(oid: str) -> str:
    """The FHIR system URI for an identifier OID: the Dutch NamingSystem URI, else ``urn:oid:``."""
    return OID_TO_SYSTEM.get(oid, f"urn:oid:{oid}")


def normalize_system(system: str) -> str:
    """Rewrite legacy ``urn:oid:`` (or bare OID) forms of the Dutch systems to their URIs."""
    oid = system[8:] if system.startswith("urn:oid:") else system
    return OID_TO_SYSTEM.get(oid, system)


def local_system(organization: str, namespace: str) -> str:
    """A system URI for identifiers assigned locally by ``organization`` (a URA) in ``namespace``.

    ``namespace`` is whatever the source calls the numbering (an HL7 assigning authority, a CSV
    profile's table name); unsafe characters are replaced so the result is a valid URI.
    """
    cleaned = _NAMESPACE_UNSAFE.sub("-", namespace.strip()).strip("-").lower() or "local"
    return f"{_LOCAL_BASE}/{organization}/{cleaned}"


def uri_identifier(value: str) -> dict[str, str] | None:
    """An Identifier for a unique id that is an OID or UUID (CDA ``<id root>``, HL7 EI) or None."""
    if is_oid(value):
        return {"system": URI_SYSTEM, "value": f"urn:oid:{value}"}
    if is_uuid(value):
        return {"system": URI_SYSTEM, "value": f"urn:uuid:{value.lower()}"}
    return None


def ura_reference(organization: str, display: str | None = None) -> dict[str, object]:
    """A logical Reference to a care organisation by its URA."""
    reference: dict[str, object] = {"identifier": {"system": URA_SYSTEM, "value": organization}}
    if display:
        reference["display"] = display
    return reference
