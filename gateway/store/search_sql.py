"""Compile a ``SearchQuery`` into SQL over the resource table and its search index."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import Alias, Exists, FromClause

from gateway.fhir.search import Criterion, DateValue, Include, SearchQuery, SortKey
from gateway.store.repository import version_columns
from gateway.store.schema import (
    CONSENT_FACTS_INDEX,
    agreement_grants,
    consent_grants,
    consent_named_holders,
    data_category_lineage,
    emergencies,
    idx_date,
    idx_reference,
    idx_string,
    idx_token,
    resource_shares,
    resources,
)

BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"


class _IndexedAlias(Alias):
    """The resources whose consent facts a search judges for its index rows: read on SQLite
    from CONSENT_FACTS_INDEX (``INDEXED BY``), which SQLite does not choose itself, as the row
    key finds the row."""

    inherit_cache = True


@compiles(_IndexedAlias, "sqlite")
def _indexed_by(element: _IndexedAlias, compiler: Any, **kw: Any) -> str:
    text: str = compiler.visit_alias(element, **kw)
    return f"{text} INDEXED BY {CONSENT_FACTS_INDEX}" if kw.get("asfrom") else text


# Aliases built once: the searched resources, included ones, and the rows consent looks at.
_R = resources.alias("r")
_T = resources.alias("t")
_S = resources.alias("s")
_REF = idx_reference.alias("ref")
_CURRENT = _IndexedAlias._construct(resources, name="current_row")
_PAGE_ROW = resources.alias("page_row")
_CONSENTS = resources.alias("consent_row")
# Above every character: "starts with v" is the range [v, v + _TOP) in byte (C) order.
_TOP = "\U0010ffff"

# Extra condition on a resources alias (isolation and consent hook up here).
Visibility = Callable[[FromClause], ColumnElement[bool] | None]


def _exists() -> Exists:
    """``EXISTS (SELECT 1 …)``. SQLite reads the table row behind an index for ``EXISTS
    (SELECT * …)`` even when the index holds every column the condition asks for: the birth
    date probed per candidate of Patient?family=Jans&birthdate=ge…&_total=accurate (100,000
    resources) cost 7.3 ms that way, 6.4 ms from the index alone."""
    return exists(literal_column("1"))


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# A string value bound as a parameter (gateway.store.search_shapes) comes with the values its
# prefix and substring matches compare with, bound under its name with these suffixes.
PREFIX_END, CONTAINS_PATTERN = "_end", "_pattern"


def prefix_end(value: str) -> str:
    """Where the strings starting with ``value`` end (exclusive)."""
    return value + _TOP


def contains_pattern(value: str) -> str:
    """The LIKE pattern of the strings containing ``value``."""
    return f"%{_like_escape(value)}%"


def _derived(value: Any, derive: Callable[[str], str], suffix: str) -> Any:
    return derive(value) if isinstance(value, str) else bindparam(f"{value.key}{suffix}")


def date_clause(lo: Any, hi: Any, value: DateValue) -> ColumnElement[bool]:
    """FHIR date comparison of a target range [lo, hi] with a search value's range."""
    contained = and_(lo >= value.lo, hi <= value.hi)
    return {
        "eq": contained,
        "ne": not_(contained),
        "gt": hi > value.hi,
        "lt": lo < value.lo,
        "ge": or_(hi > value.hi, contained),
        "le": or_(lo < value.lo, contained),
        "sa": lo > value.hi,
        "eb": hi < value.lo,
        "ap": and_(lo <= value.hi, hi >= value.lo),
    }[value.prefix]


@functools.cache
def alias_of(table: Table, slot: int) -> FromClause:
    """A named alias of ``table`` for one place in a statement, made once per process: building
    aliases (their column proxies) was the largest cost of compiling a search."""
    return table.alias(f"{table.name}_{slot}")


def criterion_clause(
    r: FromClause, c: Criterion, visible: Visibility, *, probe: bool = False, slot: int = 0
) -> ColumnElement[bool]:
    """The WHERE condition of one criterion on the resources alias ``r``.

    By default the index drives (``r.rid IN (…)``); with ``probe`` the criterion is checked per
    candidate row instead, for broad criteria next to a selective one. ``slot`` numbers the
    criterion within its statement, so that no two criteria share an alias.
    """
    if c.kind == "id":
        return r.c.res_id.in_(c.values)
    if c.kind == "lastUpdated":
        column = r.c.last_updated_us
        return or_(*(date_clause(column, column, v) for v in c.values))
    if c.missing is None:
        if (patient_keys := _patient_keys(c)) is not None:
            # patient.identifier=<BSN>: the patient key (BSN) the resource is stored under; this
            # finds a partner's data the consent opened even when its Patient record is not.
            return r.c.patient_key.in_(patient_keys)
        if c.chained or not (probe or c.modifier == "not"):
            # Drive from the search index (``rid IN (…)``): a correlated EXISTS made SQLite
            # visit every resource of the type and probe the index for each (measured: 24 ms
            # at 100k resources).
            return r.c.rid.in_(matching_rids(c, visible, slot))
    index, base = _index_of(c, slot)
    match = [] if c.missing is not None else [_index_match(c, index)]
    if probe:
        found: ColumnElement[bool] = _exists().where(index.c.rid == r.c.rid, *base, *match)
    else:
        found = r.c.rid.in_(select(index.c.rid).where(*base, *match))
    return not_(found) if c.missing or c.modifier == "not" else found


def matching_rids(
    c: Criterion, visible: Visibility, slot: int, resource_type: str | None = None
) -> Select[Any]:
    """The row keys a selective criterion (``_selective``) matches, found without reading the
    resources themselves (only their index rows; for ``_id`` and BSN chains, their keys)."""
    keys = _patient_keys(c)
    if c.kind == "id" or keys is not None:
        assert resource_type is not None, "the type of what an _id or a BSN chain matches"
        own = alias_of(resources, 300 + slot)
        match = own.c.res_id.in_(c.values) if keys is None else own.c.patient_key.in_(keys)
        return select(own.c.rid).where(own.c.res_type == resource_type, match)
    index, base = _index_of(c, slot)
    if not c.chained:
        return select(index.c.rid).where(*base, _index_match(c, index))
    target = alias_of(resources, 100 + slot)
    conditions = [
        target.c.res_type == index.c.target_type,
        target.c.res_id == index.c.target_id,
        target.c.deleted == false(),
        or_(
            *(
                and_(
                    index.c.target_type == target_type,
                    criterion_clause(target, chained, visible, slot=200 + 10 * slot + n),
                )
                for n, (target_type, chained) in enumerate(c.chained)
            )
        ),
    ]
    if (extra := visible(target)) is not None:
        conditions.append(extra)
    return (
        select(index.c.rid)
        .select_from(index)
        .join(target, and_(*conditions[:2]))
        .where(*base, *conditions[2:])
    )


def _index_of(c: Criterion, slot: int) -> tuple[FromClause, list[ColumnElement[bool]]]:
    """The search index alias of a criterion and the conditions that pick its parameter."""
    table = {
        "string": idx_string,
        "token": idx_token,
        "uri": idx_token,
        "date": idx_date,
        "reference": idx_reference,
    }[c.kind]
    index = alias_of(table, slot)
    assert c.param is not None
    return index, [index.c.res_type == c.param.resource, index.c.param == c.code]


def _index_match(c: Criterion, index: FromClause) -> ColumnElement[bool]:
    """Whether one index row holds a value the criterion asks for (its values are ORed)."""
    if c.kind == "string":
        if c.modifier == "exact":
            return index.c.value.in_(c.values)
        if c.modifier == "contains":
            return or_(
                *(
                    index.c.value_norm.like(
                        _derived(v, contains_pattern, CONTAINS_PATTERN), escape="\\"
                    )
                    for v in c.values
                )
            )
        # starts with, as a range so that the index serves it
        return or_(
            *(
                and_(
                    index.c.value_norm >= v,
                    index.c.value_norm < _derived(v, prefix_end, PREFIX_END),
                )
                for v in c.values
            )
        )
    if c.kind in ("token", "uri"):
        alternatives = []
        for v in c.values:
            parts = []
            if v.code is not None:
                parts.append(index.c.code == v.code)
            if not v.any_system:
                parts.append(
                    index.c.system.is_(None) if v.system is None else index.c.system == v.system
                )
            alternatives.append(and_(*parts))
        return or_(*alternatives)
    if c.kind == "date":
        return or_(*(date_clause(index.c.lo, index.c.hi, v) for v in c.values))
    alternatives = []
    for v in c.values:
        if v.url is not None:
            alternatives.append(index.c.url == v.url)
        elif v.target_type is None:
            alternatives.append(index.c.target_id == v.target_id)
        else:
            alternatives.append(
                and_(index.c.target_id == v.target_id, index.c.target_type == v.target_type)
            )
    return or_(*alternatives)


def _patient_keys(c: Criterion) -> list[str] | None:
    """The BSNs of a ``patient.identifier`` / ``subject.identifier`` chain naming only BSNs."""
    if not c.chained or c.code not in ("patient", "subject"):
        return None
    keys: set[str] = set()
    for target_type, chained in c.chained:
        if target_type != "Patient":
            continue
        if chained.code != "identifier" or chained.modifier or chained.missing is not None:
            return None
        for value in chained.values:
            if value.any_system or value.system != BSN_SYSTEM or value.code is None:
                return None
            keys.add(value.code)
    # One order for one set: by value, or by name when bound (gateway.store.search_shapes).
    return sorted(keys, key=lambda k: getattr(k, "key", k)) if keys else None


def _sort_column(r: FromClause, key: SortKey) -> Any:
    if key.kind == "_id":
        return r.c.res_id
    if key.kind == "_lastUpdated":
        return r.c.last_updated_us
    if key.kind == "date":
        column = idx_date.c.hi if key.descending else idx_date.c.lo
        table = idx_date
    elif key.kind == "string":
        column, table = idx_string.c.value_norm, idx_string
    else:
        column, table = idx_token.c.code, idx_token
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate).where(table.c.rid == r.c.rid, table.c.param == key.code).scalar_subquery()
    )


def filtered(query: SearchQuery, visible: Visibility) -> tuple[FromClause, list[Any]]:
    """The resources alias and every WHERE condition of the query."""
    r = _R
    driver = _driver(query.criteria)
    # With a selective criterion the plan must start from its index rows, not from every resource
    # of the type: ``res_type || ''`` keeps SQLite (without statistics) off the type index.
    res_type = r.c.res_type.concat("") if driver is not None else r.c.res_type
    conditions: list[Any] = [res_type == query.resource_type, r.c.deleted == false()]
    if query.snapshot is not None:
        conditions.append(r.c.rid <= query.snapshot)
    if (extra := visible(r)) is not None:
        conditions.append(extra)
    conditions.extend(
        criterion_clause(r, c, visible, probe=driver is not None and c is not driver, slot=n)
        for n, c in enumerate(query.criteria)
    )
    return r, conditions


def _driver(criteria: list[Criterion]) -> Criterion | None:
    """The selective criterion whose index rows a search starts from; the others are checked
    per candidate. Given as lists of row keys, SQLite built each whole list first:
    Observation?patient=&code=718-7 built the list of every 718-7 result for its one match
    (6 ms of 7 at 60,000 resources)."""
    return min((c for c in criteria if _selective(c)), key=_drive_rank, default=None)


def _drive_rank(c: Criterion) -> int:
    """How many resources a selective criterion usually matches, in ranks: the least drives,
    the first of the query among equals."""
    if c.kind == "id" or _patient_keys(c) is not None:
        return 0
    if c.kind == "reference" or c.code.endswith("identifier"):
        return 1  # one patient's, one encounter's, one record's
    if c.kind in ("string", "uri"):
        return 2
    return 3  # codes, statuses, categories: shared by many resources


def keyed(query: SearchQuery) -> bool:
    """Whether an ``_id`` or a BSN chain picks the search's matches: one resource's or one
    patient's rows whatever the values, so one plan serves every search of its shape."""
    return any(_selective(c) and _drive_rank(c) == 0 for c in query.criteria)


def _selective(c: Criterion) -> bool:
    """Whether a criterion usually matches few resources (identifiers, codes, references)."""
    if c.missing is not None or c.modifier in ("not", "contains"):
        return False
    return c.kind in ("id", "token", "uri", "reference", "string")


def page_statement(query: SearchQuery, visible: Visibility) -> Select[Any]:
    """The row keys and ids of one page of matches, in the requested order with the row key as
    tie-breaker (a search reads its page with ``counted_page_statement``)."""
    r, conditions = filtered(query, visible)
    order = [*(_ordered(_sort_column(r, key), key) for key in query.sort), r.c.rid.asc()]
    return (
        select(r.c.rid, r.c.res_id)
        .where(*conditions)
        .order_by(*order)
        .limit(query.count)
        .offset(query.offset)
    )


def counted_page_statement(
    query: SearchQuery, visible: Visibility, *, counted: bool = True
) -> Select[Any]:
    """``page_statement`` with the number of all matches as a last column, ``total``: the
    conditions are judged once for both, where a count beside the page judged them twice
    (consent for every candidate, bench/bench_consent_search.py). The page is picked by row
    key and sort keys alone, and only its rows are read whole. Not ``counted``: no total, and
    one match more than the page, which tells whether more follow."""
    indexed = _index_matches(query, visible) if counted else None
    if indexed is not None:
        rows, matches = indexed
        matches = matches.group_by(rows.c.rid)  # a resource matching by two values counts once
    else:
        rows, conditions = filtered(query, visible)
        matches = select(rows.c.rid).where(*conditions)
    keys = [_sort_column(rows, key).label(f"sort_{n}") for n, key in enumerate(query.sort)]
    total = [func.count().over().label("total")] if counted else []
    picked = (
        matches.add_columns(*keys, *total)
        .order_by(*(_ordered(k, key) for k, key in zip(keys, query.sort, strict=True)))
        .order_by(rows.c.rid.asc())
        .limit(query.count if counted else query.count + 1)
        .offset(query.offset)
        .subquery("picked")
    )
    whole = _PAGE_ROW
    order = [_ordered(picked.c[f"sort_{n}"], key) for n, key in enumerate(query.sort)]
    return (
        select(
            *version_columns(whole),
            *basis_columns(whole, visible),
            *([picked.c.total] if counted else []),
        )
        .join_from(whole, picked, whole.c.rid == picked.c.rid)
        .order_by(*order, picked.c.rid.asc())
    )


def _index_matches(
    query: SearchQuery, visible: Visibility
) -> tuple[FromClause, Select[Any]] | None:
    """For a search that judges every match (a count): the driving criterion's index alias and
    the row keys of the matches, judged on its index rows, which hold what the resource row
    would tell (an index row exists only for a current, undeleted resource of its type, and
    carries the owner). Visibility so takes an organisation's own matches from the index and
    reads the resource only for others' (Patient?family=<prefix>&birthdate=ge…&_total=accurate
    at 100,000 resources: half the time). None when no selective criterion drives or a
    criterion or sort key needs the resource row; a row key may come twice (two of its values
    match)."""
    driver = _driver(query.criteria)
    if (
        driver is None
        or any(_reads_row(c) for c in query.criteria)
        or any(key.kind in ("_id", "_lastUpdated") for key in query.sort)
    ):
        return None
    slot = next(n for n, c in enumerate(query.criteria) if c is driver)
    index, _ = _index_of(driver, slot)
    conditions: list[Any] = []
    if query.snapshot is not None:
        conditions.append(index.c.rid <= query.snapshot)
    if (extra := visible(index)) is not None:
        conditions.append(extra)
    conditions.extend(
        criterion_clause(index, c, visible, probe=True, slot=n)
        for n, c in enumerate(query.criteria)
        if c is not driver
    )
    return index, matching_rids(driver, visible, slot).where(*conditions)


def _reads_row(c: Criterion) -> bool:
    """Whether a criterion is judged on the resource row itself (its id, last update or BSN)."""
    return c.kind in ("id", "lastUpdated") or (c.missing is None and _patient_keys(c) is not None)


def page_ahead_statement(
    query: SearchQuery, visible: Visibility, *, candidates_first: bool
) -> Select[Any]:
    """One page of matches and, to tell whether more follow, one match beyond it, without
    counting them all: the default search, whose total is given only when its page holds the
    last match.

    Without ``_sort`` both databases can stop at the page's end when they take the candidates
    of a selective criterion in row-key order and judge them one after the other. SQLite does
    so by itself with ``rid IN (…)``. PostgreSQL's planner, which cannot tell that most
    candidates match, judged them all first (Patient?family=<prefix>: 25-37 ms at 100,000
    resources, bench/run.py); ``candidates_first`` spells the order out for it: the
    candidates from the search indexes alone, sorted, then each judged (type, deletion,
    visibility, the other criteria) until the page is full."""
    selective = sorted(
        ((n, c) for n, c in enumerate(query.criteria) if _selective(c)),
        key=lambda found: _drive_rank(found[1]),
    )
    if query.sort or not selective or not candidates_first:
        return counted_page_statement(query, visible, counted=False)
    (first, criterion), *others = selective
    candidates = matching_rids(criterion, visible, first, query.resource_type)
    rid = candidates.selected_columns[0]
    candidates = candidates.where(
        *(rid.in_(matching_rids(c, visible, n, query.resource_type)) for n, c in others)
    )
    if query.snapshot is not None:
        candidates = candidates.where(rid <= query.snapshot)
    candidate = candidates.distinct().order_by(rid).subquery("candidate")
    r = _R
    conditions: list[Any] = [
        r.c.rid == candidate.c.rid,
        r.c.res_type == query.resource_type,
        r.c.deleted == false(),
    ]
    if (extra := visible(r)) is not None:
        conditions.append(extra)
    conditions.extend(
        criterion_clause(r, c, visible, probe=True, slot=n)
        for n, c in enumerate(query.criteria)
        if not _selective(c)
    )
    picked = (
        select(candidate.c.rid)
        .where(_exists().where(*conditions))
        .order_by(candidate.c.rid.asc())
        .limit(query.count + 1)
        .offset(query.offset)
        .subquery("picked")
    )
    whole = _PAGE_ROW
    return (
        select(*version_columns(whole), *basis_columns(whole, visible))
        .join_from(whole, picked, whole.c.rid == picked.c.rid)
        .order_by(picked.c.rid.asc())
    )


def _ordered(column: Any, key: SortKey) -> Any:
    return column.desc().nulls_last() if key.descending else column.asc().nulls_last()


def count_statement(query: SearchQuery, visible: Visibility) -> Select[Any]:
    indexed = _index_matches(query, visible)
    if indexed is not None:
        rows, matches = indexed
        return matches.with_only_columns(func.count(rows.c.rid.distinct()))
    r, conditions = filtered(query, visible)
    return select(func.count()).select_from(r).where(*conditions)


def include_statement(include: Include, page_rids: list[int], visible: Visibility) -> Select[Any]:
    """Resources the page's resources point at through ``include.param``."""
    ref, t = _REF, _T
    conditions = [
        ref.c.rid.in_(page_rids),
        ref.c.param == include.param.code,
        t.c.res_type == ref.c.target_type,
        t.c.res_id == ref.c.target_id,
        t.c.deleted == false(),
    ]
    if include.target_type is not None:
        conditions.append(ref.c.target_type == include.target_type)
    if (extra := visible(t)) is not None:
        conditions.append(extra)
    columns = (t.c.rid, t.c.res_type, t.c.res_id, t.c.content, t.c.sealed)
    return select(*columns).where(*conditions).distinct()


def revinclude_statement(
    include: Include, page_type: str, page_ids: list[str], visible: Visibility
) -> Select[Any]:
    """Resources of ``include.source_type`` whose ``include.param`` points at the page."""
    ref, s = _REF, _S
    conditions = [
        ref.c.res_type == include.source_type,
        ref.c.param == include.param.code,
        ref.c.target_type == page_type,
        ref.c.target_id.in_(page_ids),
        s.c.rid == ref.c.rid,
        s.c.deleted == false(),
    ]
    if include.target_type not in (None, page_type):
        conditions.append(false())
    if (extra := visible(s)) is not None:
        conditions.append(extra)
    columns = (s.c.rid, s.c.res_type, s.c.res_id, s.c.content, s.c.sealed)
    return select(*columns).where(*conditions).distinct()


def everything_visible(_alias: FromClause) -> ColumnElement[bool] | None:
    """Visibility for system maintenance: no extra condition."""
    return None


@dataclass(frozen=True)
class ConsentScope:
    """The request facts consent-based visibility depends on (the time is read when the
    statement runs: ``_NOW``)."""

    actor_id: str
    purpose: str
    opt_out: bool  # the network's default when a patient recorded no consent


def _clock_us() -> int:
    return time.time_ns() // 1000


# Consent, agreements and emergencies are judged at the moment a statement runs, so one built
# condition serves every request of the same actor.
_NOW = bindparam("visibility_now_us", callable_=_clock_us, type_=BigInteger)


@functools.lru_cache(maxsize=512)
def organization_visible(
    organization: str | None,
    public_owner: str,
    scope: ConsentScope | None = None,
    *,
    addressed: bool = True,
) -> Visibility:
    """What an organisation sees: its own resources, the network's public ones (the directory),
    with ``addressed`` what was addressed to it (once delivered), and, with a ``scope``, other
    organisations' data that an agreement and the patient's consent (or a declared emergency)
    open to it.

    Kept per actor, with each condition built once per alias: building the consent arm's
    expression cost more than running the search (bench/bench_consent_search.py)."""
    return _visibility(organization, public_owner, scope, addressed=addressed)


def _visibility(
    organization: Any, public_owner: Any, scope: ConsentScope | None, *, addressed: bool
) -> Visibility:
    @functools.cache
    def clause(alias: FromClause) -> ColumnElement[bool]:
        paths: list[ColumnElement[bool]] = [alias.c.owner_org.in_([organization, public_owner])]
        if addressed:
            paths.append(_addressed_to(alias, organization))
        if scope is not None and organization is not None:
            if "patient_key" in alias.c:
                paths.append(_consented(alias, organization, scope))
            else:  # an index row: judged by the resource it indexes
                current = _CURRENT
                paths.append(
                    _exists().where(
                        current.c.rid == alias.c.rid, _consented(current, organization, scope)
                    )
                )
        return or_(*paths)

    return clause


def _addressed_to(alias: FromClause, organization: Any) -> Exists:
    """Whether the row was addressed to the organisation: shared with it, delivered, and the
    version that was sent (a later one of the sender's needs consent).
    Probed per row by its key: as an IN list the organisation's whole inbox was read for every
    statement, which for one retrieve cost more than everything else once it had received a few
    hundred documents."""
    shares = resource_shares
    if "vpk" in alias.c:  # a version (vread, history): the one sent, or one before it
        sent = or_(shares.c.version.is_(None), alias.c.version <= shares.c.version)
    else:  # the current version, or its index rows: while it is the one sent
        sent = shares.c.latest.is_(True)
    return _exists().where(
        shares.c.rid == alias.c.rid,
        shares.c.org_ura == organization,
        shares.c.active.is_(True),
        sent,
    )


def visible_rid(
    organization: str, public_owner: str, scope: ConsentScope, *, addressed: bool
) -> tuple[Select[Any], dict[str, Any]]:
    """``organization_visible`` for one resource (by ``rid``): the statement, built once per
    shape with every value a parameter, and those values; it answers a row when the resource is
    visible, with its ``basis_columns``. Building the expression costs more than running it
    (bench/bench_exchange.py, ITI-68)."""
    return _visible_rid_statement(addressed, scope.opt_out), _values(
        organization, public_owner, scope
    )


def hidden_of_patient(
    organization: str, public_owner: str, scope: ConsentScope, *, addressed: bool
) -> tuple[Select[Any], dict[str, Any]]:
    """The resources of one type about one patient (bind ``patient`` and ``res_type``) that
    ``organization_visible`` keeps from the organisation, in one statement, built once per
    shape, and the organisation's values."""
    return _hidden_statement(addressed, scope.opt_out), _values(organization, public_owner, scope)


def bound_visibility(
    organization: str | None, public_owner: str, scope: ConsentScope | None, *, addressed: bool
) -> tuple[Visibility, dict[str, Any]]:
    """``organization_visible`` with every value a parameter, and those values: one Visibility
    for every organisation and actor, so that what is built with it can be kept per shape
    (gateway.store.search_shapes)."""
    opt_out = None if scope is None else scope.opt_out
    values = {"org": organization, "public": public_owner}
    if scope is not None:
        values |= {"actor": scope.actor_id, "purpose": scope.purpose}
    return _bound_visibility(addressed, opt_out), values


def _values(organization: str, public_owner: str, scope: ConsentScope) -> dict[str, Any]:
    return bound_visibility(organization, public_owner, scope, addressed=True)[1]


@functools.cache
def _bound_visibility(addressed: bool, opt_out: bool | None) -> Visibility:
    def value(name: str) -> Any:  # a parameter where the builders take a value
        return bindparam(name)

    scope = None if opt_out is None else ConsentScope(value("actor"), value("purpose"), opt_out)
    visible = _visibility(value("org"), value("public"), scope, addressed=addressed)
    if scope is not None:
        _EXPLAINABLE[visible] = addressed
    return visible


@functools.cache
def _parametrized(addressed: bool, opt_out: bool) -> ColumnElement[bool]:
    """The visibility condition on ``resources`` with every value a parameter (``_values``)."""
    condition = _bound_visibility(addressed, opt_out)(resources)
    assert condition is not None, "an organisation's visibility always has a condition"
    return condition


@functools.cache
def _visible_rid_statement(addressed: bool, opt_out: bool) -> Select[Any]:
    # With what the audit's basis needs (basis_columns): a retrieve by its recipient, or a read
    # a consent opened, then needs no statement of its own (ITI-68, bench_exchange.py).
    basis = basis_columns(resources, _bound_visibility(addressed, opt_out))
    return select(resources.c.rid, *basis).where(
        resources.c.rid == bindparam("rid"), _parametrized(addressed, opt_out)
    )


@functools.cache
def _hidden_statement(addressed: bool, opt_out: bool) -> Select[Any]:
    r = resources
    # The audit notes what was kept hidden, never its content.
    columns = [null().label("content") if c.key == "content" else c for c in version_columns(r)]
    return (
        select(*columns)
        .where(
            r.c.patient_key == bindparam("patient"),
            r.c.res_type == bindparam("res_type"),
            r.c.deleted == false(),
            _parametrized(addressed, opt_out).is_not(True),  # unknown counts as hidden
        )
        .order_by(r.c.owner_org, r.c.rid)
        .limit(50)
    )


def _consented(r: FromClause, organization: str, scope: ConsentScope) -> ColumnElement[bool]:
    """Another organisation's resource, opened by an agreement and the patient's consent or an
    emergency.

    The SQL form of consent.decide for reads: consent_grants and agreement_grants hold the rows
    consent.consent_grants and consent.agreement_grants computed (property-tested against
    consent_permits and agreement_covers); categories match through data_category_lineage.
    """
    now = _NOW
    g = consent_grants
    consent_ok: ColumnElement[bool] = (
        _exists().where(*_grant_matches(g, r, organization, scope.purpose)).correlate(r)
    )
    if scope.opt_out:
        consents = _CONSENTS
        recorded = (
            _exists()
            .where(
                consents.c.res_type == "Consent",
                consents.c.patient_key == r.c.patient_key,
                consents.c.deleted == false(),
            )
            .correlate(r)
        )
        consent_ok = or_(consent_ok, not_(recorded))
    # The agreements (and in _grant_matches the category tree) are judged by uncorrelated IN
    # lists, which both databases build once per statement and probe per row; correlated per
    # row, they made PostgreSQL's broad searches three times slower than without consent.
    # ``IS TRUE``: inside the resource's EXISTS, PostgreSQL turned a bare IN into a join that it
    # ran again for every candidate; an expression it hashes once.
    a, leaves = agreement_grants, data_category_lineage
    agreed = (
        select(a.c.holder_org, leaves.c.leaf)
        .join_from(a, leaves, leaves.c.category == a.c.category)
        .where(*_agreement_in_force(organization, scope.purpose))
        .correlate(None)
    )
    agreement_ok = tuple_(r.c.owner_org, r.c.data_category).in_(agreed).is_(true())
    emergency = (
        _exists()
        .where(
            emergencies.c.actor_id == scope.actor_id,
            emergencies.c.patient_key == r.c.patient_key,
            emergencies.c.start_us <= now,
            emergencies.c.end_us > now,
        )
        .correlate(r)
    )
    return and_(
        r.c.patient_key.is_not(None),
        r.c.data_category.is_not(None),
        agreement_ok,  # in an emergency too: it stands in for the consent, not the agreement
        or_(consent_ok, emergency),
    )


def _grant_matches(
    g: FromClause, r: FromClause, organization: Any, purpose: Any
) -> list[ColumnElement[bool]]:
    """A consent grant row ``g`` that opens row ``r`` to the organisation now (as
    consent.ConsentGrant.matches)."""
    now = _NOW
    lineage = select(data_category_lineage.c.leaf, data_category_lineage.c.category).correlate(None)
    named = (
        _exists()
        .where(
            consent_named_holders.c.patient_key == r.c.patient_key,
            consent_named_holders.c.holder_org == r.c.owner_org,
        )
        .correlate(r)
    )
    return [
        g.c.patient_key == r.c.patient_key,
        g.c.grantee_org == organization,
        or_(g.c.holder_org == r.c.owner_org, and_(g.c.holder_org == "*", not_(named))),
        g.c.purpose == purpose,
        tuple_(r.c.data_category, g.c.category).in_(lineage).is_(true()),
        g.c.valid_from_us <= now,
        g.c.valid_to_us > now,
        or_(
            and_(r.c.data_date_us.is_(None), g.c.covers_undated),
            and_(
                r.c.data_date_us.is_not(None),
                g.c.covers_dated,
                g.c.data_from_us <= r.c.data_date_us,
                g.c.data_to_us > r.c.data_date_us,
            ),
        ),
    ]


def _agreement_in_force(organization: Any, purpose: Any) -> list[ColumnElement[bool]]:
    a = agreement_grants
    return [
        a.c.grantee_org == organization,
        a.c.purpose == purpose,
        a.c.valid_from_us <= _NOW,
        a.c.valid_to_us > _NOW,
    ]


# -- what the audit's basis can take from a page's rows --------------------------------------

# The bound visibilities (bound_visibility) whose rows basis_columns can explain, with whether
# they admit what was addressed to the organisation.
_EXPLAINABLE: dict[Visibility, bool] = {}


def explains(visible: Visibility) -> bool:
    """Whether pages under ``visible`` carry ``basis_columns``."""
    return visible in _EXPLAINABLE


def basis_columns(r: FromClause, visible: Visibility) -> list[Any]:
    """For the rows of a page under a bound visibility with consent, what the audit's basis
    would otherwise read and decide again (gateway.policy.basis): whether the row was addressed
    to the organisation, the consent ids of the consent grant that opens it (NULL with none),
    and the one agreement grant covering it (NULL with none or several: decide names the first
    of its facts). Judged only for other organisations' rows, and only for the page's: with
    its basis taken as fixed, 'other, opened' (bench_consent_search.py) ran a sixth faster.
    No columns for any other visibility."""
    addressed = _EXPLAINABLE.get(visible)
    if addressed is None:
        return []
    # The parameters whose values bound_visibility gives.
    organization: Any = bindparam("org")
    purpose: Any = bindparam("purpose")
    g, a, leaves = consent_grants, agreement_grants, data_category_lineage
    consents = (
        select(func.min(g.c.consent_ids))
        .where(*_grant_matches(g, r, organization, purpose))
        .correlate(r)
        .scalar_subquery()
    )
    agreement = (
        select(case((func.count(a.c.agreement_id.distinct()) == 1, func.min(a.c.agreement_id))))
        .join_from(a, leaves, leaves.c.category == a.c.category)
        .where(
            *_agreement_in_force(organization, purpose),
            a.c.holder_org == r.c.owner_org,
            leaves.c.leaf == r.c.data_category,
        )
        .correlate(r)
        .scalar_subquery()
    )
    foreign = r.c.owner_org.not_in([organization, bindparam("public")])
    to_organisation = _addressed_to(r, organization) if addressed else false()
    # What was addressed is a referral: its consent and agreement are not asked (a recipient's
    # retrieve, ITI-68).
    opened = and_(foreign, not_(to_organisation)) if addressed else foreign
    return [
        case((foreign, to_organisation), else_=false()).label("basis_addressed"),
        case((opened, consents), else_=null()).label("basis_consents"),
        case((opened, agreement), else_=null()).label("basis_agreement"),
    ]
