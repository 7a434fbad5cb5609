"""Parse FHIR search parameters into a ``SearchQuery`` (what to match, sort, page, include)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import BadRequest
from gateway.fhir.dates import date_range
from gateway.fhir.dutch_identifiers import normalized_system
from gateway.fhir.indexing import normalize
from gateway.fhir.search_params import SearchParam, SearchParamRegistry, parse_reference

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
RESULT_PARAMS = {
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_offset",
    "_snapshot",
}
TOTAL_MODES = ("none", "estimate", "accurate")
IGNORED_PARAMS = {"_format", "_pretty"}
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "missing"},
    "uri": {"not", "missing"},
    "date": {"missing"},
    "reference": {"missing"},
}
_ANY = object()


@dataclass(frozen=True)
class TokenValue:
    system: Any  # a system URI, None for "no system" (``|code``), or _ANY
    code: str | None  # None when only the system was given (``system|``)

    @property
    def any_system(self) -> bool:
        return self.system is _ANY


@dataclass(frozen=True)
class DateValue:
    prefix: str
    lo: int
    hi: int


@dataclass(frozen=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str | None


@dataclass(frozen=True)
class Criterion:
    """One search parameter occurrence; its comma-separated values are ORed."""

    code: str
    kind: str  # string, token, uri, date, reference, id, lastUpdated
    param: SearchParam | None
    modifier: str | None
    values: tuple[Any, ...]
    missing: bool | None = None
    # ``subject.identifier=x``: the referenced resource, of one of these types, must match the
    # chained criterion of its type.
    chained: tuple[tuple[str, Criterion], ...] = ()


@dataclass(frozen=True)
class SortKey:
    code: str
    kind: str
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    param: SearchParam
    target_type: str | None


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    snapshot: int | None = None
    summary_count: bool = False
    # ``_total``: accurate, estimate or none; without it (or with estimate) a total is given
    # when the page holds the last match, because counting every match of a broad search costs
    # more than finding its page.
    total: str | None = None
    elements: tuple[str, ...] = ()
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # what the self link shows

    @property
    def counts_all(self) -> bool:
        """Whether the search counts every match (``_total=accurate``, ``_count=0``,
        ``_summary=count``)."""
        return self.summary_count or self.total == "accurate" or self.count == 0


def parse_search(
    resource_type: str,
    params: list[tuple[str, str]],
    registry: SearchParamRegistry,
    *,
    default_count: int,
    max_count: int,
    strict: bool,
    own_base: str,
) -> SearchQuery:
    """Build the query; unknown parameters raise in strict handling and are dropped otherwise."""
    query = SearchQuery(resource_type, count=default_count)
    for name, value in params:
        if name in IGNORED_PARAMS:
            continue
        if name in RESULT_PARAMS:
            _result_param(query, name, value, registry, max_count)
            if name not in ("_offset", "_snapshot"):
                query.used.append((name, value))
            continue
        try:
            criterion = _criterion(resource_type, name, value, registry, own_base)
        except _Unsupported as exc:
            if strict or isinstance(exc, _Narrowing):
                raise BadRequest(str(exc), code="not-supported") from None
            continue
        query.criteria.append(criterion)
        query.used.append((name, value))
    return query


class _Unsupported(Exception):
    """A parameter this server does not know: ignored unless handling is strict."""


class _Narrowing(_Unsupported):
    """A known parameter asked in a way this server does not support (a modifier, a chain):
    refused however the client asked for handling, as ignoring it would return more than
    was asked for (FHIR: a server rejects a modifier it does not support)."""


def _criterion(
    resource_type: str, name: str, value: str, registry: SearchParamRegistry, own_base: str
) -> Criterion:
    head, dot, chained_code = name.partition(".")
    code, _, modifier_text = head.partition(":")
    chain = (chained_code,) if dot else ()
    modifier = modifier_text or None
    if code == "_id":
        if modifier:
            raise _Narrowing(f"Modifier ':{modifier}' is not supported on _id")
        return Criterion(code, "id", None, None, tuple(_split_values(value)))
    if code == "_lastUpdated":
        if modifier:
            raise _Narrowing(f"Modifier ':{modifier}' is not supported on _lastUpdated")
        return Criterion(
            code, "lastUpdated", None, None, tuple(_date(v) for v in _split_values(value))
        )
    param = registry.get(resource_type, code)
    if param is None:
        raise _Unsupported(f"Unknown search parameter '{code}' for {resource_type}")
    if chain:
        if param.type != "reference":
            raise _Narrowing(f"Parameter '{code}' is not a reference and cannot be chained")
        if "." in chain[0]:
            raise _Narrowing("Only one level of chaining is supported")
        # Without a type modifier, every target type that knows the chained parameter counts.
        targets = [modifier] if modifier else list(param.targets)
        chained = tuple(
            (target, _criterion(target, chain[0], value, registry, own_base))
            for target in targets
            if registry.get(target, chain[0].partition(":")[0]) is not None
        )
        if not chained:
            raise _Narrowing(f"No type that '{code}' points at has a parameter '{chain[0]}'")
        return Criterion(code, "reference", param, modifier, (), chained=chained)
    if modifier == "missing":
        if value not in ("true", "false"):
            raise BadRequest(f"':missing' takes true or false, not '{value}'", code="value")
        return Criterion(code, param.type, param, modifier, (), missing=value == "true")
    if param.type == "reference" and modifier is not None and modifier in param.targets:
        typed = tuple(_reference(v, own_base, modifier) for v in _split_values(value))
        return Criterion(code, "reference", param, None, typed)
    if modifier is not None and modifier not in MODIFIERS.get(param.type, set()):
        raise _Narrowing(f"Modifier ':{modifier}' is not supported on '{code}'")
    raw = _split_values(value)
    if param.type == "string":
        if modifier == "exact":
            values: tuple[Any, ...] = tuple(raw)
        else:
            values = tuple(normalize(v) for v in raw)
    elif param.type in ("token", "uri"):
        values = tuple(_token(v) if param.type == "token" else TokenValue(_ANY, v) for v in raw)
    elif param.type == "date":
        values = tuple(_date(v) for v in raw)
    else:
        values = tuple(_reference(v, own_base, None) for v in raw)
    return Criterion(code, param.type, param, modifier, values)


_SPLIT = re.compile(r"(?<!\\),")


def _split_values(value: str) -> list[str]:
    """Comma-separated alternatives; ``\\,`` is a literal comma."""
    if "\x00" in value:
        raise BadRequest("A search value may not contain NUL characters", code="value")
    values = [v.replace("\\,", ",") for v in _SPLIT.split(value)]
    if any(v == "" for v in values):
        raise BadRequest("A search parameter has an empty value", code="value")
    return values


def _token(value: str) -> TokenValue:
    if "|" not in value:
        return TokenValue(_ANY, value)
    system, _, code = value.partition("|")
    # Stored identifiers carry the http://fhir.nl form; legacy OID queries find them too.
    return TokenValue(normalized_system(system) if system else None, code or None)


def _date(value: str) -> DateValue:
    prefix = value[:2] if value[:2] in DATE_PREFIXES else "eq"
    text = value[2:] if value[:2] in DATE_PREFIXES else value
    found = date_range(text)
    if found is None:
        raise BadRequest(
            f"'{value}' is not a valid date search value (e.g. ge2024-01-01)", code="value"
        )
    return DateValue(prefix, *found)


def _reference(value: str, own_base: str, type_modifier: str | None) -> ReferenceValue:
    if value.startswith(own_base + "/"):
        value = value[len(own_base) + 1 :]
    parsed = parse_reference(value)
    if parsed is not None and parsed[2] is None:
        return ReferenceValue(parsed[0], parsed[1], None)
    if parsed is None and "/" not in value and ":" not in value:
        return ReferenceValue(type_modifier, value, None)
    return ReferenceValue(None, None, value)


def _result_param(
    query: SearchQuery, name: str, value: str, registry: SearchParamRegistry, max_count: int
) -> None:
    if name == "_count":
        query.count = min(non_negative(name, value), max_count)
    elif name == "_offset":
        query.offset = non_negative(name, value)
    elif name == "_snapshot":
        query.snapshot = non_negative(name, value)
    elif name == "_summary":
        if value == "count":
            query.summary_count = True
        elif value != "false":
            raise BadRequest(
                f"_summary={value} is not supported (count and false are)", code="not-supported"
            )
    elif name == "_total":
        if value not in TOTAL_MODES:
            raise BadRequest(
                f"_total={value[:40]} is not supported (none, estimate and accurate are)",
                code="value",
            )
        query.total = value
    elif name == "_elements":
        query.elements = tuple(e.strip() for e in value.split(",") if e.strip())
    elif name == "_sort":
        query.sort = [_sort_key(query.resource_type, k, registry) for k in value.split(",") if k]
    elif name in ("_include", "_revinclude"):
        include = _include(value, registry)
        if name == "_include":
            if include.source_type not in (query.resource_type, "*"):
                raise BadRequest(
                    f"_include={value} does not start from {query.resource_type}", code="value"
                )
            query.includes.append(include)
        else:
            query.revincludes.append(include)


def whole_number(value: str) -> int | None:
    """``value`` as a non-negative integer that fits a database's BIGINT, else None.
    ``str.isdigit`` alone also takes digits such as '²' that ``int`` refuses."""
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return int(value)


def non_negative(name: str, value: str) -> int:
    """A paging parameter's value; 400 unless ``whole_number``."""
    number = whole_number(value)
    if number is None:
        raise BadRequest(f"{name} must be a non-negative integer, not '{value[:40]}'", code="value")
    return number


def _sort_key(resource_type: str, key: str, registry: SearchParamRegistry) -> SortKey:
    descending = key.startswith("-")
    code = key.removeprefix("-")
    if code in ("_id", "_lastUpdated"):
        return SortKey(code, code, descending)
    param = registry.get(resource_type, code)
    if param is None or param.type not in ("string", "token", "date", "uri"):
        raise BadRequest(f"Cannot sort {resource_type} by '{code}'", code="not-supported")
    return SortKey(code, param.type, descending)


def _include(value: str, registry: SearchParamRegistry) -> Include:
    parts = value.removesuffix(":iterate").split(":")
    if value.endswith(":iterate"):
        raise BadRequest("':iterate' includes are not supported", code="not-supported")
    if len(parts) not in (2, 3):
        raise BadRequest(f"'{value}' is not Type:parameter[:targetType]", code="value")
    param = registry.get(parts[0], parts[1])
    if param is None or param.type != "reference":
        raise BadRequest(f"'{parts[1]}' is not a reference parameter of {parts[0]}", code="value")
    target = parts[2] if len(parts) == 3 else None
    if target is not None and param.targets and target not in param.targets:
        raise BadRequest(f"{parts[0]}:{parts[1]} cannot point at {target}", code="value")
    return Include(parts[0], param, target)
