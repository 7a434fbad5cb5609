"""Code systems, units and numbers: OIDs and HL7 v2 coding-system names to FHIR system URIs,
UCUM, and decimals.

FHIR wants canonical URIs for well-known code systems (``http://loinc.org``), while CDA names them
by OID and HL7 v2 by a short name from table 0396 (``LN``). Unknown OIDs become ``urn:oid:``
systems (still exact); unknown v2 names have no URI, so the caller keeps the code without a system.

Units: a Quantity may only claim ``http://unitsofmeasure.org`` when its code is UCUM. ``ucum_code``
accepts valid UCUM expressions built from the common clinical atoms, maps a few spellings that lab
systems send instead (``x10e9/l``, ``mmHg``, ``µmol/l``), and returns None for anything else, so a
unit we cannot vouch for is kept as display text only.
"""

from __future__ import annotations

import re

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V2_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v2-0078"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


_DECIMAL = re.compile(r"[+-]?(\d{1,18}(\.\d{0,17})?|\.\d{1,17})")


def decimal_value(text: str) -> int | float | None:
    """A JSON number for a decimal as a source writes it, or None when it is not one that FHIR's
    ``decimal`` can carry (no exponent, at most 18 digits before and 17 after the point)."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    return float(text) if "." in text else int(text)


_MIME_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[A-Za-z0-9][\w!#$&^.+-]*(\s*;\s*[\w.+-]+=\S+)*")


_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def is_language_tag(text: str) -> bool:
    """True for a BCP 47 language tag such as ``nl-NL`` (the common forms)."""
    return bool(_LANGUAGE_TAG.fullmatch(text))


def is_mime_type(text: str) -> bool:
    """True for a MIME type such as ``application/pdf`` or ``text/plain; charset=utf-8``."""
    return bool(_MIME_TYPE.fullmatch(text))


def v2_table(number: str | int) -> str:
    """System URI of HL7 v2 table ``number``, e.g. ``v2_table(203)`` → ``…/v2-0203``."""
    return f"http://terminology.hl7.org/CodeSystem/v2-{int(number):04d}"


_V3_NAMES = {
    "1": "AdministrativeGender",
    "2": "MaritalStatus",
    "4": "ActCode",
    "5": "ActMood",
    "6": "ActClass",
    "7": "ActPriority",
    "14": "ActStatus",
    "25": "Confidentiality",
    "83": "ObservationInterpretation",
    "88": "ParticipationFunction",
    "90": "ParticipationType",
    "110": "RoleClass",
    "111": "RoleCode",
    "112": "RouteOfAdministration",
    "1008": "NullFlavor",
    "1063": "ObservationValue",
    "1119": "AddressUse",
}

_OID_SYSTEMS = {
    "2.16.840.1.113883.6.1": LOINC,
    "2.16.840.1.113883.6.96": SNOMED,
    "2.16.840.1.113883.6.88": RXNORM,
    "2.16.840.1.113883.6.8": UCUM,
    "2.16.840.1.113883.6.3": "http://hl7.org/fhir/sid/icd-10",
    "2.16.840.1.113883.6.90": "http://hl7.org/fhir/sid/icd-10-cm",
    "2.16.840.1.113883.6.103": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.104": "http://hl7.org/fhir/sid/icd-9-cm",
    "2.16.840.1.113883.6.12": "http://www.ama-assn.org/go/cpt",
    "2.16.840.1.113883.6.69": "http://hl7.org/fhir/sid/ndc",
    "2.16.840.1.113883.6.101": "http://nucc.org/provider-taxonomy",
    "2.16.840.1.113883.12.292": "http://hl7.org/fhir/sid/cvx",
    "2.16.840.1.113883.4.9": "http://fdasis.nlm.nih.gov",
    "2.16.840.1.113883.3.26.1.1": "http://ncithesaurus-stage.nci.nih.gov",
    "1.2.840.10008.2.16.4": "http://dicom.nema.org/resources/ontology/DCM",
}

_V2_NAMES = {
    "LN": LOINC,
    "LOINC": LOINC,
    "SCT": SNOMED,
    "SNOMEDCT": SNOMED,
    "SNOMED-CT": SNOMED,
    "UCUM": UCUM,
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": RXNORM,
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
}
_V2_TABLE_NAME = re.compile(r"HL7-?(\d{4})")


def system_for_code_oid(oid: str) -> str:
    """FHIR system URI for a code system OID (CDA ``codeSystem``); unknown OIDs → ``urn:oid:``."""
    known = _OID_SYSTEMS.get(oid)
    if known:
        return known
    if oid.startswith("2.16.840.1.113883.5.") and oid[20:] in _V3_NAMES:
        return f"http://terminology.hl7.org/CodeSystem/v3-{_V3_NAMES[oid[20:]]}"
    if oid.startswith("2.16.840.1.113883.12.") and oid[21:].isdigit():
        return v2_table(oid[21:])
    return f"urn:oid:{oid}"


def system_for_v2_name(name: str) -> str | None:
    """FHIR system URI for an HL7 v2 coding-system name (CWE-3), or None when unknown."""
    key = name.strip().upper()
    if key in _V2_NAMES:
        return _V2_NAMES[key]
    table = _V2_TABLE_NAME.fullmatch(key)
    if table:
        return v2_table(table.group(1))
    return None


# v3 ObservationInterpretation codes; HL7 v2 table 0078 flags outside this set keep the v2 system.
# fmt: off
V3_INTERPRETATION_CODES = frozenset({
    "<", ">", "A", "AA", "AC", "B", "CAR", "D", "DET", "E", "EX", "EXP", "H", "HH", "HM", "HU",
    "HX", "I", "IE", "IND", "L", "LL", "LU", "LX", "MS", "N", "NCL", "ND", "NEG", "NR", "NS",
    "OBX", "POS", "QCF", "R", "RR", "S", "SDD", "SYN-R", "SYN-S", "TOX", "U", "UNE", "VS", "W",
    "WR",
})
# fmt: on


# ---- UCUM -------------------------------------------------------------------------------------

# fmt: off
_PREFIXES = (
    "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "da", "d", "c", "m", "u", "n", "p", "f", "a",
    "z", "y", "Ki", "Mi", "Gi", "Ti",
)
# fmt: on
# Atoms that take a prefix (metric) and atoms that do not; the common clinical subset of UCUM.
# fmt: off
_METRIC_ATOMS = frozenset({
    "m", "g", "s", "l", "L", "mol", "K", "cd", "Hz", "N", "Pa", "J", "W", "A", "V", "F", "Ohm",
    "S", "T", "H", "Wb", "lm", "lx", "Bq", "Gy", "Sv", "R", "eq", "osm", "kat", "U", "[iU]",
    "[IU]", "bar", "cal", "B", "Cel", "t", "m[Hg]", "m[H2O]",
})
_PLAIN_ATOMS = frozenset({
    "min", "h", "d", "wk", "mo", "a", "%", "'", "''", "deg", "[ppm]", "[ppb]", "[ppth]", "[pH]",
    "[in_i]", "[ft_i]", "[lb_av]", "[oz_av]", "[degF]", "[drp]", "[HPF]", "[LPF]", "[CFU]",
    "[PFU]", "[arb'U]", "[USP'U]", "[APL'U]", "[GPL'U]", "[MPL'U]", "[AU]", "[BAU]", "[pi]",
    "[sft_i]", "[in_i'Hg]", "[mi_i]", "[yd_i]", "[gal_us]", "[qt_us]", "[pt_us]", "[foz_us]",
    "[tsp_us]", "[tbs_us]", "[cup_us]",
})
# fmt: on
_COMPONENT = re.compile(
    r"(?P<ten>10[*^][+-]?\d+)"
    r"|(?P<unit>(?:\[[^\[\]{}]*\]|[^\s./(){}\[\]\d+-])+(?:\[[^\[\]{}]*\])*)(?P<exp>[+-]?\d+)?"
    r"(?P<ann1>\{[^{}]*\})?"
    r"|(?P<factor>\d+)(?P<ann2>\{[^{}]*\})?"
    r"|(?P<ann>\{[^{}]*\})"
)

# Spellings laboratory systems send instead of UCUM (lower-cased key → UCUM code).
_UNIT_ALIASES = {
    "beats/min": "/min",
    "bpm": "/min",
    "breaths/min": "/min",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "cmh2o": "cm[H2O]",
    "°c": "Cel",
    "deg c": "Cel",
    "degc": "Cel",
    "°f": "[degF]",
    "degf": "[degF]",
    "sec": "s",
    "hr": "h",
    "hrs": "h",
    "yr": "a",
    "yrs": "a",
    "years": "a",
    "iu/l": "[IU]/L",
    "iu/ml": "[IU]/mL",
    "µmol/l": "umol/L",
    "μmol/l": "umol/L",
    "µg/l": "ug/L",
    "μg/l": "ug/L",
    "µl": "uL",
    "x10e9/l": "10*9/L",
    "x10^9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "giga/l": "10*9/L",
    "giga.l-1": "10*9/L",
    "x10e12/l": "10*12/L",
    "x10^12/l": "10*12/L",
    "10^12/l": "10*12/L",
    "tera/l": "10*12/L",
    "tera.l-1": "10*12/L",
    "cells/ul": "{cells}/uL",
    "k/ul": "10*3/uL",
    "meq/l": "meq/L",
    "ratio": "{ratio}",
    "ph": "[pH]",
}


def _simple_unit_ok(symbol: str) -> bool:
    if symbol in _PLAIN_ATOMS or symbol in _METRIC_ATOMS:
        return True
    return any(
        symbol.startswith(prefix) and symbol[len(prefix) :] in _METRIC_ATOMS for prefix in _PREFIXES
    )


def _parse_term(text: str, pos: int, depth: int) -> int:
    """Parse a UCUM term from ``pos``; return the end position or -1 when it is not UCUM."""
    if depth > 8:
        return -1
    if pos < len(text) and text[pos] == "/":  # a leading division: "/min"
        pos += 1
    while True:
        if pos < len(text) and text[pos] == "(":
            pos = _parse_term(text, pos + 1, depth + 1)
            if pos < 0 or pos >= len(text) or text[pos] != ")":
                return -1
            pos += 1
        else:
            match = _COMPONENT.match(text, pos)
            if not match or match.end() == pos:
                return -1
            unit = match.group("unit")
            if unit is not None and not _simple_unit_ok(unit):
                return -1
            pos = match.end()
        if pos < len(text) and text[pos] in "./":
            pos += 1
            continue
        return pos


def is_ucum(code: str) -> bool:
    """True when ``code`` is a UCUM expression over the atoms this module knows."""
    if not code or len(code) > 64 or code != code.strip():
        return False
    return _parse_term(code, 0, 0) == len(code)


def ucum_code(unit: str) -> str | None:
    """The UCUM code for a unit as sent by a source system, or None when it is not UCUM."""
    text = unit.strip()
    # Aliases first: some lab spellings are valid UCUM with another meaning ("K/uL" is kelvin).
    alias = _UNIT_ALIASES.get(text.lower())
    if alias:
        return alias
    return text if is_ucum(text) else None
