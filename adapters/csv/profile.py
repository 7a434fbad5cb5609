"""CSV mapping profiles: TOML files saying which file maps to which resource and how.

Profiles ship as package data in ``adapters/csv_profiles/<name>.toml`` (``SourceInfo.profile =
"synthea"``) or are read from a path ending in ``.toml``. The language is documented in
``adapters/csv_profiles/README.md``; this module loads a profile and checks it completely, so a
typo is a ``ProfileError`` naming the key before any row is read, not a silently empty field.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .._errors import ProfileError
from .._identifiers import BSN_SYSTEM

# The fields each resource type understands, and of which kind they are.
#   text: a string; date / datetime: a time (ISO 8601 or ``format``); code: a coded value;
#   ref: the id of a row of another table (patient → Patient, encounter → Encounter);
#   value: an observation value (numeric or text by ``type_column``).
FIELDS: dict[str, dict[str, str]] = {
    "Patient": {
        "family": "text", "given": "text", "prefix": "text", "suffix": "text", "maiden": "text",
        "birth_date": "date", "death_date": "datetime", "gender": "code", "marital": "code",
        "line": "text", "city": "text", "district": "text", "state": "text",
        "postal_code": "text", "country": "text", "phone": "text", "email": "text",
    },
    "Encounter": {
        "patient": "ref", "start": "datetime", "end": "datetime", "class": "code",
        "type": "code", "reason": "code", "status": "code",
    },
    "Condition": {
        "patient": "ref", "encounter": "ref", "onset": "datetime", "abatement": "datetime",
        "code": "code", "category": "code",
    },
    "Observation": {
        "patient": "ref", "encounter": "ref", "effective": "datetime", "code": "code",
        "value": "value", "category": "code", "status": "code",
    },
    "MedicationStatement": {
        "patient": "ref", "encounter": "ref", "start": "datetime", "end": "datetime",
        "code": "code", "reason": "code",
    },
    "AllergyIntolerance": {
        "patient": "ref", "encounter": "ref", "onset": "datetime", "end": "datetime",
        "code": "code", "type": "code", "category": "code",
    },
    "Procedure": {
        "patient": "ref", "encounter": "ref", "start": "datetime", "end": "datetime",
        "code": "code", "reason": "code",
    },
    "Immunization": {
        "patient": "ref", "encounter": "ref", "date": "datetime", "code": "code",
    },
}  # fmt: skip
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": (),
    "Encounter": ("patient",),
    "Condition": ("patient", "code"),
    "Observation": ("patient", "code"),
    "MedicationStatement": ("patient", "code"),
    "AllergyIntolerance": ("patient", "code"),
    "Procedure": ("patient", "code"),
    "Immunization": ("patient", "code", "date"),
}
_FIELD_KEYS = {
    "column", "value", "format", "map", "system", "system_column", "display", "unit",
    "type_column", "numeric",
}  # fmt: skip
_TOP_KEYS = {"name", "description", "delimiter", "encoding", "id_system", "code_systems", "tables"}
_TABLE_KEYS = {"file", "resource", "id", "fields", "identifiers", "reactions"}


@dataclass(frozen=True)
class FieldSpec:
    """How one FHIR field is read from a row. Column tuples list alternatives: the first one
    present in the file's header is used (exports change column names between versions)."""

    columns: tuple[str, ...] = ()
    value: str | None = None
    format: str | None = None
    map: Mapping[str, str] = field(default_factory=dict)
    system: str | None = None
    system_column: tuple[str, ...] = ()
    display: tuple[str, ...] = ()
    unit: tuple[str, ...] = ()
    type_column: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ("numeric",)


@dataclass(frozen=True)
class IdentifierSpec:
    column: tuple[str, ...]
    system: str


@dataclass(frozen=True)
class ReactionSpec:
    manifestation: FieldSpec
    severity: FieldSpec | None


@dataclass(frozen=True)
class TableSpec:
    name: str
    file: str
    resource: str
    id_columns: tuple[tuple[str, ...], ...]  # parts of the row id, each with alternatives
    fields: Mapping[str, FieldSpec]
    identifiers: tuple[IdentifierSpec, ...] = ()
    reactions: tuple[ReactionSpec, ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    delimiter: str
    encoding: str
    id_system: str | None
    code_systems: Mapping[str, str]
    tables: tuple[TableSpec, ...]

    def table_for_file(self, filename: str) -> TableSpec | None:
        base = Path(filename).name.lower()
        return next((t for t in self.tables if t.file.lower() == base), None)


def _columns(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ProfileError(f"{where}: expected a column name or a list of column names")


def _id_columns(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    # "Id" → one part; ["PATIENT", "CODE", ["START", "DATE"]] → three parts, the last with
    # alternatives.
    if isinstance(value, str):
        return (_columns(value, where),)
    if isinstance(value, list) and value:
        return tuple(_columns(part, f"{where}[{i}]") for i, part in enumerate(value))
    raise ProfileError(f"{where}: expected a column name or a list of them")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ProfileError(f"{where}: expected a non-empty string")
    return value


def _field(value: Any, where: str) -> FieldSpec:
    if isinstance(value, str | list):
        return FieldSpec(columns=_columns(value, where))
    if not isinstance(value, dict):
        raise ProfileError(f"{where}: expected a column name, a list of them, or a table")
    unknown = set(value) - _FIELD_KEYS
    if unknown:
        raise ProfileError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_FIELD_KEYS)}"
        )
    if ("column" in value) == ("value" in value):
        raise ProfileError(f"{where}: give exactly one of 'column' (read) and 'value' (constant)")
    mapping = value.get("map", {})
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ProfileError(f"{where}.map: expected a table of strings")

    def optional(key: str) -> tuple[str, ...]:
        return _columns(value[key], f"{where}.{key}") if key in value else ()

    return FieldSpec(
        columns=optional("column"),
        value=_string(value["value"], f"{where}.value") if "value" in value else None,
        format=_string(value["format"], f"{where}.format") if "format" in value else None,
        map={str(k).strip().upper(): v for k, v in mapping.items()},
        system=_string(value["system"], f"{where}.system") if "system" in value else None,
        system_column=optional("system_column"),
        display=optional("display"),
        unit=optional("unit"),
        type_column=optional("type_column"),
        numeric=tuple(v.lower() for v in optional("numeric")) or ("numeric",),
    )


def _table(name: str, raw: Any) -> TableSpec:
    where = f"tables.{name}"
    if not isinstance(raw, dict):
        raise ProfileError(f"{where}: expected a table")
    unknown = set(raw) - _TABLE_KEYS
    if unknown:
        raise ProfileError(
            f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(_TABLE_KEYS)}"
        )
    resource = _string(raw.get("resource"), f"{where}.resource")
    if resource not in FIELDS:
        raise ProfileError(f"{where}.resource: {resource!r} not supported; one of {sorted(FIELDS)}")
    known = FIELDS[resource]
    raw_fields = raw.get("fields", {})
    if not isinstance(raw_fields, dict):
        raise ProfileError(f"{where}.fields: expected a table")
    fields: dict[str, FieldSpec] = {}
    for key, spec in raw_fields.items():
        if key not in known:
            raise ProfileError(
                f"{where}.fields.{key}: unknown field for {resource}; known: {sorted(known)}"
            )
        fields[key] = _field(spec, f"{where}.fields.{key}")
    missing = [f for f in REQUIRED_FIELDS[resource] if f not in fields]
    if missing:
        raise ProfileError(f"{where}.fields: {resource} needs {missing}")
    identifiers = []
    for index, item in enumerate(raw.get("identifiers", [])):
        at = f"{where}.identifiers[{index}]"
        if not isinstance(item, dict) or set(item) != {"column", "system"}:
            raise ProfileError(f"{at}: expected a table with 'column' and 'system'")
        system = _string(item["system"], f"{at}.system")
        identifiers.append(
            IdentifierSpec(
                _columns(item["column"], f"{at}.column"), BSN_SYSTEM if system == "bsn" else system
            )
        )
    reactions = []
    for index, item in enumerate(raw.get("reactions", [])):
        at = f"{where}.reactions[{index}]"
        if (
            resource != "AllergyIntolerance"
            or not isinstance(item, dict)
            or "manifestation" not in item
        ):
            raise ProfileError(
                f"{at}: reactions belong to AllergyIntolerance and need 'manifestation'"
            )
        reactions.append(
            ReactionSpec(
                _field(item["manifestation"], f"{at}.manifestation"),
                _field(item["severity"], f"{at}.severity") if "severity" in item else None,
            )
        )
    id_columns = _id_columns(raw["id"], f"{where}.id") if "id" in raw else ()
    if resource in ("Patient", "Encounter") and len(id_columns) != 1:
        # Other tables refer to patients and encounters by this one column.
        raise ProfileError(f"{where}.id: a {resource} table needs one id column")
    return TableSpec(
        name=name,
        file=_string(raw.get("file"), f"{where}.file"),
        resource=resource,
        id_columns=id_columns,
        fields=fields,
        identifiers=tuple(identifiers),
        reactions=tuple(reactions),
    )


def parse_profile(text: str, origin: str) -> Profile:
    """Parse and check a profile's TOML text; ``origin`` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {origin}: not valid TOML: {exc}") from exc
    try:
        unknown = set(raw) - _TOP_KEYS
        if unknown:
            raise ProfileError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
        tables_raw = raw.get("tables")
        if not isinstance(tables_raw, dict) or not tables_raw:
            raise ProfileError("tables: at least one table is needed")
        tables = [_table(name, spec) for name, spec in tables_raw.items()]
        patients = [t for t in tables if t.resource == "Patient"]
        if len(patients) != 1:
            raise ProfileError("tables: exactly one table must map to Patient")
        code_systems = raw.get("code_systems", {})
        if not isinstance(code_systems, dict) or not all(
            isinstance(v, str) for v in code_systems.values()
        ):
            raise ProfileError("code_systems: expected a table of URIs")
        delimiter = raw.get("delimiter", ",")
        if not isinstance(delimiter, str) or len(delimiter) != 1:
            raise ProfileError("delimiter: expected one character")
        encoding = raw.get("encoding", "utf-8")
        try:
            "".encode(encoding)
        except (LookupError, TypeError) as exc:
            raise ProfileError(f"encoding: unknown encoding {encoding!r}") from exc
        id_system = raw.get("id_system")
        if id_system is not None:
            id_system = _string(id_system, "id_system")
    except ProfileError as exc:
        raise ProfileError(f"profile {origin}: {exc}") from exc
    return Profile(
        name=str(raw.get("name", origin)),
        description=str(raw.get("description", "")),
        delimiter=delimiter,
        encoding=encoding,
        id_system=id_system,
        code_systems={k.upper(): v for k, v in code_systems.items()},
        # Patients first, then encounters: other rows refer to them.
        tables=tuple(
            sorted(tables, key=lambda t: {"Patient": 0, "Encounter": 1}.get(t.resource, 2))
        ),
    )


@cache
def _packaged(name: str) -> Profile:
    resource = resources.files("adapters.csv_profiles").joinpath(f"{name}.toml")
    if not resource.is_file():
        shipped = sorted(
            p.name.removesuffix(".toml")
            for p in resources.files("adapters.csv_profiles").iterdir()
            if p.name.endswith(".toml")
        )
        raise ProfileError(f"unknown CSV profile {name!r}; shipped profiles: {shipped}")
    return parse_profile(resource.read_text(encoding="utf-8"), name)


def load_profile(name_or_path: str | None) -> Profile:
    """The profile named in ``SourceInfo.profile``: a shipped name, or a path to a TOML file."""
    if not name_or_path:
        raise ProfileError("CSV input needs a mapping profile (SourceInfo.profile, e.g. 'synthea')")
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProfileError(f"profile {path}: cannot be read ({exc.strerror})") from exc
        return parse_profile(text, str(path))
    if not name_or_path.replace("_", "").replace("-", "").isalnum():
        raise ProfileError(f"invalid profile name {name_or_path!r}")
    return _packaged(name_or_path)
