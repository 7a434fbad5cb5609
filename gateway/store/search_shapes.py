"""Search statements built once per query shape, with every value of the query a parameter.

Building a search's statement, and SQLAlchemy's cache key of it (a walk through the whole
expression, consent arms included), took a quarter of the gateway's CPU for a search
(py-spy, Patient?family=&birthdate= on PostgreSQL). What decides a search's SQL is its shape:
the type, each criterion's parameter, modifier, prefixes, token systems and reference types,
chains, the sort, the visibility. Its values (strings, codes, dates, ids, the snapshot, the
page) are bound when the statement runs, so one built statement serves every search of its
shape, and SQLAlchemy finds its compiled form by the key it keeps on the statement.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from sqlalchemy import BigInteger, Integer, Select, bindparam

from gateway.fhir.search import Criterion, DateValue, ReferenceValue, SearchQuery, TokenValue
from gateway.store.search_sql import (
    CONTAINS_PATTERN,
    PREFIX_END,
    Visibility,
    contains_pattern,
    count_statement,
    counted_page_statement,
    page_ahead_statement,
    prefix_end,
)

Kind = Literal["counted", "count", "page", "page, candidates first"]

_BUILDERS: dict[Kind, Callable[[SearchQuery, Visibility], Select[Any]]] = {
    "counted": counted_page_statement,
    "count": count_statement,
    "page": lambda q, v: page_ahead_statement(q, v, candidates_first=False),
    "page, candidates first": lambda q, v: page_ahead_statement(q, v, candidates_first=True),
}

# Shapes seen in a process are few (the searches its clients make); the bound keeps a client
# that makes up endless shapes from growing it without end.
_KEPT = 2048
_statements: dict[tuple[Any, ...], Select[Any]] = {}
_lock = threading.Lock()


def search_statement(
    kind: Kind, query: SearchQuery, visible: Visibility, visibility_values: Mapping[str, Any]
) -> tuple[Select[Any], dict[str, Any]]:
    """The statement of ``kind`` for ``query`` (see gateway.store.search_sql), kept per shape,
    and the values to run it with. ``visible`` must bind its values (``bound_visibility``, or
    none at all), since it is part of the shape."""
    binder = _Binder(dict(visibility_values))
    shaped = binder.query(query)
    key = (kind, visible, _shape(query))
    statement = _statements.get(key)
    if statement is None:
        statement = _BUILDERS[kind](shaped, visible)
        with _lock:
            if len(_statements) >= _KEPT:
                _statements.clear()
            _statements[key] = statement
    return statement, binder.values


class _Binder:
    """Replaces a query's values by parameters named in the order met, noting the values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self._n = 0

    def bind(self, value: Any, type_: Any = None) -> Any:
        name = f"v{self._n}"
        self._n += 1
        self.values[name] = value
        return bindparam(name, type_=type_)

    def query(self, query: SearchQuery) -> SearchQuery:
        return dataclasses.replace(
            query,
            criteria=[self.criterion(c) for c in query.criteria],
            count=self._page("page_count", query.count),
            offset=self._page("page_offset", query.offset),
            snapshot=None if query.snapshot is None else self._snapshot(query.snapshot),
        )

    def _page(self, name: str, value: int) -> Any:
        self.values[name] = value
        return bindparam(name, type_=Integer)

    def _snapshot(self, value: int) -> Any:
        self.values["snapshot"] = value
        return bindparam("snapshot", type_=BigInteger)

    def criterion(self, c: Criterion) -> Criterion:
        return dataclasses.replace(
            c,
            values=tuple(self.value(v) for v in c.values),
            chained=tuple((t, self.criterion(chained)) for t, chained in c.chained),
        )

    def value(self, v: Any) -> Any:
        if isinstance(v, str):
            bound = self.bind(v)
            self.values[f"{bound.key}{PREFIX_END}"] = prefix_end(v)
            self.values[f"{bound.key}{CONTAINS_PATTERN}"] = contains_pattern(v)
            return bound
        if isinstance(v, TokenValue):  # the system decides the SQL (none, any, a BSN chain)
            return TokenValue(v.system, None if v.code is None else self.bind(v.code))
        if isinstance(v, DateValue):
            return DateValue(v.prefix, self.bind(v.lo, BigInteger), self.bind(v.hi, BigInteger))
        if isinstance(v, ReferenceValue):  # the target type decides the SQL
            target_id = None if v.target_id is None else self.bind(v.target_id)
            url = None if v.url is None else self.bind(v.url)
            return ReferenceValue(v.target_type, target_id, url)
        raise TypeError(f"no parameter for a search value of type {type(v).__name__}")


def _shape(query: SearchQuery) -> tuple[Any, ...]:
    """What decides a query's SQL: everything but its values."""
    return (
        query.resource_type,
        tuple(_criterion_shape(c) for c in query.criteria),
        tuple(query.sort),
        query.snapshot is None,
    )


def _criterion_shape(c: Criterion) -> tuple[Any, ...]:
    return (
        c.code,
        c.kind,
        c.param,
        c.modifier,
        c.missing,
        tuple(_value_shape(v) for v in c.values),
        tuple((t, _criterion_shape(chained)) for t, chained in c.chained),
    )


def _value_shape(v: Any) -> Any:
    if isinstance(v, TokenValue):
        return ("token", v.system, v.code is None)
    if isinstance(v, DateValue):
        return ("date", v.prefix)
    if isinstance(v, ReferenceValue):
        return ("reference", v.target_type, v.target_id is None, v.url is None)
    return "string"
