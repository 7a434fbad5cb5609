"""Derive the gateway's FHIR tables from the official HL7 FHIR R4 (4.0.1) definitions.

Usage: python tools/gen_definitions.py PATH/TO/hl7.fhir.r4.examples-4.0.1/package

The npm package hl7.fhir.r4.examples@4.0.1 carries the specification's own definition bundles
(``Bundle-resources.json`` = profiles-resources.json, ``Bundle-types.json`` = profiles-types.json,
``Bundle-searchParams.json`` = search-parameters.json, ``Bundle-valuesets.json``,
``Bundle-v2-valuesets.json`` and ``Bundle-v3-valuesets.json``). Those are read when present; else
the single ``StructureDefinition-*.json`` / ``SearchParameter-*.json`` / ``ValueSet-*.json`` /
``CodeSystem-*.json`` files are used (leaving out the package's example SearchParameters).

Writes, into gateway/fhir/definitions/ (compact JSON, sorted keys):

- search_parameters.json: the search parameters the gateway supports, one entry per resource+code,
  each with its FHIRPath expression cut down to the parts for that resource.
- element_types.json: per resource type, complex datatype and backbone element (keyed by path), a
  map JSON property -> {"t": [type], "a": max > 1}. Choice elements are expanded per type. For a
  backbone element, or a content reference, "t" holds the key of the table describing its children
  (e.g. "Patient.contact", "Questionnaire.item"), so every "t" entry is a primitive type code,
  "Resource" (any resource, typed by its own resourceType) or a key of this same map.
- required_bindings.json: "<table key>.<JSON property>" -> sorted allowed codes, for code elements
  with a required binding whose value set expands from the package alone.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent.parent / "gateway" / "fhir" / "definitions"

Json = dict[str, Any]

PRIMITIVE_TYPES = frozenset(
    {
        "boolean",
        "integer",
        "positiveInt",
        "unsignedInt",
        "decimal",
        "string",
        "code",
        "uri",
        "url",
        "canonical",
        "id",
        "oid",
        "uuid",
        "markdown",
        "base64Binary",
        "instant",
        "date",
        "dateTime",
        "time",
        "xhtml",
    }
)
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
# FHIRPath system types used by the R4 snapshots for Element.id, Extension.url and the like, when
# the element does not carry the structuredefinition-fhir-type extension.
SYSTEM_TYPES = {
    "http://hl7.org/fhirpath/System.String": "string",
    "http://hl7.org/fhirpath/System.Boolean": "boolean",
    "http://hl7.org/fhirpath/System.Integer": "integer",
    "http://hl7.org/fhirpath/System.Decimal": "decimal",
    "http://hl7.org/fhirpath/System.Date": "date",
    "http://hl7.org/fhirpath/System.DateTime": "dateTime",
    "http://hl7.org/fhirpath/System.Time": "time",
}

# The gateway's supported search parameters: resource -> codes ("Resource" = every resource type).
CLINICAL = ("patient", "subject", "code", "category", "date", "status", "identifier")
REQUESTED_SEARCH: dict[str, tuple[str, ...]] = {
    "Resource": ("_id", "_lastUpdated", "_tag", "_profile", "_security"),
    "Patient": ("identifier", "name", "family", "given", "birthdate", "gender"),
    "Organization": ("identifier", "name", "endpoint", "active"),
    "Endpoint": ("identifier", "organization", "status", "connection-type"),
    "Practitioner": ("identifier", "name", "family", "given"),
    "PractitionerRole": ("identifier", "organization", "practitioner"),
    "Encounter": (*CLINICAL, "class", "type"),
    "Observation": CLINICAL,
    "Condition": CLINICAL,
    "AllergyIntolerance": (*CLINICAL, "clinical-status"),
    "MedicationStatement": (*CLINICAL, "effective"),
    "MedicationRequest": (*CLINICAL, "authoredon"),
    "Procedure": CLINICAL,
    "DiagnosticReport": CLINICAL,
    "Immunization": CLINICAL,
    "DocumentReference": (
        "patient",
        "subject",
        "status",
        "identifier",
        "category",
        "type",
        "date",
        "period",
        "author",
        "facility",
        "setting",
        "security-label",
        "format",
        "related",
        "relatesto",
        "custodian",
        "contenttype",
        "event",
    ),
    "List": ("patient", "subject", "code", "status", "identifier", "source", "item", "date"),
    "Consent": ("patient", "status", "category", "actor", "purpose", "date", "identifier"),
    "AuditEvent": ("patient", "agent", "entity", "date", "type", "subtype", "outcome", "action"),
    "Provenance": ("target", "patient"),
    "Task": (
        "owner",
        "requester",
        "status",
        "patient",
        "subject",
        "code",
        "based-on",
        "identifier",
        "focus",
    ),
    "Composition": ("patient", "subject", "type", "date", "identifier", "status"),
    "Binary": (),
}


def warn(message: str) -> None:
    print(message, file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Loading the package
# --------------------------------------------------------------------------------------------


@dataclass
class Package:
    """The definitional resources of one FHIR package, as parsed JSON."""

    structure_definitions: list[Json] = field(default_factory=list)
    search_parameters: list[Json] = field(default_factory=list)
    value_sets: dict[str, Json] = field(default_factory=dict)
    code_systems: dict[str, Json] = field(default_factory=dict)
    source: str = ""


def _read(path: Path) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    return data


def _bundle_resources(path: Path) -> Iterator[Json]:
    for entry in _read(path).get("entry", []):
        resource = entry.get("resource")
        if isinstance(resource, dict):
            yield resource


def load_package(root: Path) -> Package:
    """Read the definitions from an extracted package folder (the one holding package.json)."""
    if (root / "package").is_dir() and not (root / "package.json").exists():
        root = root / "package"
    pkg = Package()
    bundles = {
        name: root / f"Bundle-{name}.json"
        for name in (
            "resources",
            "types",
            "searchParams",
            "valuesets",
            "v2-valuesets",
            "v3-valuesets",
        )
    }
    terminology: Iterable[Json]
    if all(path.exists() for path in bundles.values()):
        pkg.source = "official definition bundles (Bundle-resources/types/searchParams/*valuesets)"
        for name in ("resources", "types"):
            pkg.structure_definitions.extend(
                r
                for r in _bundle_resources(bundles[name])
                if r["resourceType"] == "StructureDefinition"
            )
        pkg.search_parameters = list(_bundle_resources(bundles["searchParams"]))
        terminology = (
            r
            for name in ("valuesets", "v2-valuesets", "v3-valuesets")
            for r in _bundle_resources(bundles[name])
        )
    else:
        pkg.source = "single definition files (StructureDefinition-*, SearchParameter-*, ...)"
        pkg.structure_definitions = [
            _read(p) for p in sorted(root.glob("StructureDefinition-*.json"))
        ]
        pkg.search_parameters = [
            sp
            for sp in (_read(p) for p in sorted(root.glob("SearchParameter-*.json")))
            # The package also holds the spec's *example* SearchParameters (experimental).
            if sp.get("base") and not sp.get("experimental")
        ]
        terminology = (
            _read(p)
            for pattern in ("ValueSet-*.json", "CodeSystem-*.json")
            for p in sorted(root.glob(pattern))
        )
    for resource in terminology:
        url = resource.get("url")
        if not url:
            continue
        if resource["resourceType"] == "ValueSet":
            pkg.value_sets[url] = resource
        elif resource["resourceType"] == "CodeSystem":
            pkg.code_systems[url] = resource
    return pkg


# --------------------------------------------------------------------------------------------
# Element tables
# --------------------------------------------------------------------------------------------


def is_base_definition(sd: Json) -> bool:
    """True for the base definition of a resource type or complex datatype (not a profile)."""
    return sd.get("kind") in ("resource", "complex-type") and sd.get("derivation") != "constraint"


def type_code(type_entry: Json) -> str:
    """The FHIR type code of an ElementDefinition.type entry (System.* types mapped back)."""
    code: str = type_entry["code"]
    if code.startswith("http://hl7.org/fhirpath/"):
        for ext in type_entry.get("extension", []):
            if ext.get("url") == FHIR_TYPE_EXT:
                return str(ext.get("valueUrl") or ext.get("valueUri") or ext.get("valueString"))
        return SYSTEM_TYPES[code]
    return code


def is_repeating(element: Json) -> bool:
    maximum = element.get("max", "1")
    return maximum == "*" or (maximum.isdigit() and int(maximum) > 1)


@dataclass(frozen=True)
class Prop:
    """One JSON property of a table, before serialisation."""

    table: str
    name: str
    types: tuple[str, ...]
    repeating: bool
    element: Json


def element_props(sds: list[Json]) -> dict[str, dict[str, Prop]]:
    """Every table (type or backbone path) -> JSON property -> Prop."""
    tables: dict[str, dict[str, Prop]] = {}
    for sd in sds:
        if not is_base_definition(sd):
            continue
        elements: list[Json] = sd["snapshot"]["element"]
        paths = {e["path"] for e in elements}
        parents = {p.rsplit(".", 1)[0] for p in paths if "." in p}
        tables.setdefault(sd["type"], {})
        for element in elements:
            path: str = element["path"]
            if "." not in path or element.get("max") == "0":
                continue
            table, name = path.rsplit(".", 1)
            repeating = is_repeating(element)
            props = tables.setdefault(table, {})
            if "contentReference" in element:
                target = element["contentReference"].split("#", 1)[1]
                props[name] = Prop(table, name, (target,), repeating, element)
            elif name.endswith("[x]"):
                stem = name[:-3]
                for entry in element["type"]:
                    code = type_code(entry)
                    prop_name = stem + code[0].upper() + code[1:]
                    props[prop_name] = Prop(table, prop_name, (code,), repeating, element)
            else:
                codes = tuple(dict.fromkeys(type_code(t) for t in element["type"]))
                if path in parents:  # a backbone element: its children form their own table
                    codes = (path,)
                props[name] = Prop(table, name, codes, repeating, element)
    # Every non-primitive type must resolve to a table (or to "Resource", typed at run time).
    for table, props in tables.items():
        for prop in props.values():
            for code in prop.types:
                if code not in PRIMITIVE_TYPES and code not in tables:
                    raise SystemExit(f"{table}.{prop.name}: type {code!r} has no table")
    return tables


def element_types_json(tables: dict[str, dict[str, Prop]]) -> dict[str, dict[str, Json]]:
    return {
        table: {name: {"t": list(p.types), "a": p.repeating} for name, p in props.items()}
        for table, props in tables.items()
    }


# --------------------------------------------------------------------------------------------
# Required bindings
# --------------------------------------------------------------------------------------------


class NotExpandable(Exception):
    """A value set that cannot be expanded from the package alone."""


def _selectable(concept: Json) -> bool:
    """False for abstract concepts (notSelectable), which official expansions leave out."""
    return not any(
        p.get("code") in ("notSelectable", "abstract") and p.get("valueBoolean") is True
        for p in concept.get("property", [])
    )


def _concept_codes(concepts: list[Json]) -> Iterator[str]:
    for concept in concepts:
        if _selectable(concept):
            yield concept["code"]
        yield from _concept_codes(concept.get("concept", []))


@dataclass
class Expander:
    """Expands value sets from the package's CodeSystems and ValueSets (no terminology server)."""

    pkg: Package
    cache: dict[str, frozenset[str]] = field(default_factory=dict)

    def expand(self, url: str, seen: tuple[str, ...] = ()) -> frozenset[str]:
        url = url.split("|", 1)[0]
        if url in self.cache:
            return self.cache[url]
        if url in seen:
            raise NotExpandable(f"value set {url} includes itself")
        vs = self.pkg.value_sets.get(url)
        if vs is None:
            raise NotExpandable(f"value set {url} is not in the package")
        compose = vs.get("compose")
        if not compose or not compose.get("include"):
            raise NotExpandable(f"value set {url} has no compose.include")
        codes: set[str] = set()
        for include in compose["include"]:
            codes |= self._part(include, (*seen, url))
        for exclude in compose.get("exclude", []):
            codes -= self._part(exclude, (*seen, url))
        result = frozenset(codes)
        self.cache[url] = result
        return result

    def _part(self, part: Json, seen: tuple[str, ...]) -> frozenset[str]:
        if part.get("filter"):
            raise NotExpandable(f"value set {seen[-1]} uses filters on {part.get('system')}")
        selected: frozenset[str] | None = None
        for vs_url in part.get("valueSet", []):
            codes = self.expand(vs_url, seen)
            selected = codes if selected is None else selected & codes
        system = part.get("system")
        if system:
            if part.get("concept"):
                codes = frozenset(c["code"] for c in part["concept"])
            else:
                codes = self._whole_system(system, seen[-1])
            selected = codes if selected is None else selected & codes
        if selected is None:
            raise NotExpandable(f"value set {seen[-1]} has an empty include")
        return selected

    def _whole_system(self, system: str, vs_url: str) -> frozenset[str]:
        cs = self.pkg.code_systems.get(system)
        if cs is None:
            raise NotExpandable(f"value set {vs_url} needs external code system {system}")
        if cs.get("content", "complete") != "complete":
            raise NotExpandable(
                f"value set {vs_url} needs code system {system} (content={cs.get('content')})"
            )
        return frozenset(_concept_codes(cs.get("concept", [])))


def required_bindings(
    tables: dict[str, dict[str, Prop]], pkg: Package
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Return ({"Type.path": codes}, {skipped value set url: reason})."""
    expander = Expander(pkg)
    bindings: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    for table, props in tables.items():
        for name, prop in props.items():
            binding = prop.element.get("binding") or {}
            if prop.types != ("code",) or binding.get("strength") != "required":
                continue
            vs_url = binding.get("valueSet")
            if not vs_url:
                continue
            try:
                codes = expander.expand(vs_url)
            except NotExpandable as exc:
                skipped.setdefault(vs_url.split("|", 1)[0], str(exc))
                continue
            bindings[f"{table}.{name}"] = sorted(codes)
    return bindings, skipped


# --------------------------------------------------------------------------------------------
# Search parameters
# --------------------------------------------------------------------------------------------


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression on its top-level ``|`` (not inside brackets or strings)."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for i, char in enumerate(expression):
        if quote:
            if char == quote and expression[i - 1] != "\\":
                quote = None
        elif char in "'\"`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


_ROOT = re.compile(r"^\(*\s*([A-Za-z][A-Za-z0-9]*)")


def expression_root(part: str) -> str | None:
    match = _ROOT.match(part)
    return match.group(1) if match else None


def restrict_expression(expression: str, resource: str) -> str:
    """Keep only the union branches of ``expression`` that start at ``resource``."""
    return " | ".join(p for p in split_union(expression) if expression_root(p) == resource)


_WHERE_IS = re.compile(r"\.where\(\s*resolve\(\)\s+is\s+([A-Za-z]+)\s*\)\s*\)?$")
_PATH_PART = re.compile(r"^\(*\s*([A-Za-z][A-Za-z0-9.]*?)(?:\s+as\s+[A-Za-z]+\s*\))?\s*$")


def _element_targets(path: str, index: dict[str, Json]) -> set[str] | None:
    """Resource types a Reference element at ``path`` may point to; None when unknown/any."""
    element = index.get(path) or index.get(path + "[x]")
    if element is None:
        return None
    targets: set[str] = set()
    for entry in element.get("type", []):
        if entry.get("code") != "Reference":
            continue
        for profile in entry.get("targetProfile", []):
            targets.add(profile.rsplit("/", 1)[-1])
    if not targets or "Resource" in targets:
        return None
    return targets


def reference_targets(
    sp: Json, resource: str, expression: str, index: dict[str, Json]
) -> list[str]:
    """The official targets of a reference parameter, narrowed to what ``resource``'s branches of
    the expression can point to (``where(resolve() is X)`` or the element's targetProfiles)."""
    official: list[str] = list(sp.get("target", []))
    if len(sp.get("base", [])) < 2:
        return sorted(official)
    reachable: set[str] = set()
    for part in split_union(expression):
        where = _WHERE_IS.search(part)
        if where:
            reachable.add(where.group(1))
            continue
        match = _PATH_PART.match(part)
        targets = _element_targets(match.group(1), index) if match else None
        if targets is None:
            return sorted(official)
        reachable |= targets
    narrowed = [t for t in official if t in reachable]
    return sorted(narrowed or official)


def search_parameters(pkg: Package) -> list[Json]:
    by_key: dict[tuple[str, str], Json] = {}
    for sp in pkg.search_parameters:
        for base in sp.get("base", []):
            by_key.setdefault((base, sp["code"]), sp)
    index: dict[str, Json] = {}
    for sd in pkg.structure_definitions:
        if is_base_definition(sd):
            for element in sd["snapshot"]["element"]:
                index[element["path"]] = element
    out: list[Json] = []
    for resource, codes in REQUESTED_SEARCH.items():
        for code in codes:
            found = by_key.get((resource, code))
            if found is None:
                warn(f"search parameter {resource}:{code} does not exist in R4; left out")
                continue
            sp = found
            expression = sp.get("expression", "")
            if len(sp["base"]) > 1:
                expression = restrict_expression(expression, resource)
                if not expression:
                    raise SystemExit(f"{sp['url']}: no expression branch for {resource}")
            for part in split_union(expression):
                if expression_root(part) != resource:
                    raise SystemExit(f"{sp['url']}: branch {part!r} is not on {resource}")
            targets = (
                reference_targets(sp, resource, expression, index)
                if sp["type"] == "reference"
                else []
            )
            out.append(
                {
                    "resource": resource,
                    "code": code,
                    "type": sp["type"],
                    "expression": expression,
                    "target": targets,
                    "url": sp["url"],
                }
            )
    return out


# --------------------------------------------------------------------------------------------


def write_json(name: str, data: Any) -> int:
    text = json.dumps(data, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    (OUT_DIR / name).write_text(text + "\n", encoding="utf-8")
    return len(text)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        warn(__doc__ or "")
        return 2
    pkg = load_package(Path(argv[1]))
    warn(f"reading {pkg.source}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    params = search_parameters(pkg)
    size = write_json("search_parameters.json", params)
    warn(f"search_parameters.json: {len(params)} parameters ({size} bytes)")

    tables = element_props(pkg.structure_definitions)
    size = write_json("element_types.json", element_types_json(tables))
    n_props = sum(len(p) for p in tables.values())
    warn(f"element_types.json: {len(tables)} tables, {n_props} properties ({size} bytes)")

    bindings, skipped = required_bindings(tables, pkg)
    size = write_json("required_bindings.json", bindings)
    n_vs = len({b["binding"]["valueSet"].split("|")[0] for b in _bound_elements(tables)})
    warn(
        f"required_bindings.json: {len(bindings)} elements bound, "
        f"{n_vs - len(skipped)} value sets expanded, {len(skipped)} skipped ({size} bytes)"
    )
    for url, reason in sorted(skipped.items()):
        warn(f"  skipped {url}: {reason}")
    return 0


def _bound_elements(tables: dict[str, dict[str, Prop]]) -> Iterator[Json]:
    for props in tables.values():
        for prop in props.values():
            binding = prop.element.get("binding") or {}
            required = binding.get("strength") == "required" and binding.get("valueSet")
            if prop.types == ("code",) and required:
                yield prop.element


if __name__ == "__main__":
    sys.exit(main(sys.argv))
