"""Consent grants: the consent decision for one patient, precomputed as rows for SQL filtering.

The gateway filters search results in SQL before paging and counting, so it cannot ask
``consent_permits`` per row. ``consent_grants`` enumerates, for one patient, every combination of
grantee, holder, category, purpose, request time and data date where the patient's consents permit
a read, as ``ConsentGrant`` rows. Contract (proved by a property test): for any request whose
grantee, holder, purpose and category are among those enumerated,
``consent_permits(request).permit`` is True exactly when some row ``matches`` it.

How: every dimension is partitioned at each boundary the consents mention. Organisations are
grouped by what the consents can tell apart (URAs and organisation types they name), categories
down to leaves by the selections the provisions make, purposes by the purpose sets they name (plus
TREAT and its specialisations), request time and data date at every period and dataPeriod
boundary. ``consent_permits``' core is evaluated once per elementary cell; permitted cells are
merged along data date and request time, and leaves into the widest category all of whose leaves
share the same rows.

Emergencies and agreements are not part of grants: the gateway applies them separately.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise, product

from consent._categories import CHILDREN, LEAVES, LEAVES_BELOW, ROOT
from consent._consent_check import OPT_IN, NetworkPolicy, evaluate
from consent._errors import InvalidRequest
from consent._provisions import PatientConsent, Provision
from consent._request import AccessRequest
from consent._terminology import ACTIONS, PURPOSES

_NO_IDS: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    """A cell where the patient's consents permit ``grantee_org`` to read data of ``holder_org``.

    ``category`` is matched against the request's categories; times are half-open: the request time
    in ``[valid_from, valid_to)``, a dated request's data date in ``[data_from, data_to)``; None is
    unbounded. ``covers_dated`` / ``covers_undated`` tell whether dated resp. undated data (a
    resource without a clinical date) is covered.
    """

    grantee_org: str
    holder_org: str
    category: str
    purpose: str
    valid_from: datetime | None
    valid_to: datetime | None
    data_from: datetime | None
    data_to: datetime | None
    covers_dated: bool
    covers_undated: bool
    consent_ids: tuple[str, ...]

    def matches(self, request: AccessRequest) -> bool:
        """Whether this grant covers ``request``: the semantics the gateway's SQL must implement."""
        if (
            request.actor_org != self.grantee_org
            or request.holder_org != self.holder_org
            or request.purpose != self.purpose
            or self.category not in request.categories
        ):
            return False
        if self.valid_from is not None and request.at < self.valid_from:
            return False
        if self.valid_to is not None and request.at >= self.valid_to:
            return False
        if request.data_ts is None:
            return self.covers_undated
        if not self.covers_dated:
            return False
        if self.data_from is not None and request.data_ts < self.data_from.timestamp():
            return False
        return self.data_to is None or request.data_ts < self.data_to.timestamp()


# (data_from, data_to, covers_dated, covers_undated, consent_ids)
_DataRow = tuple[datetime | None, datetime | None, bool, bool, tuple[str, ...]]
# (valid_from, valid_to, rows)
_Window = tuple[datetime | None, datetime | None, tuple[_DataRow, ...]]
_Cell = tuple[datetime | None, datetime | None, float]


def consent_grants(
    patient: str,
    consents: Iterable[PatientConsent],
    grantees: Mapping[str, frozenset[str]],
    holders: Iterable[str],
    policy: NetworkPolicy = OPT_IN,
    *,
    purposes: Iterable[str] | None = None,
    action: str = "read",
) -> list[ConsentGrant]:
    """Every cell where ``consent_permits`` permits ``action`` on ``patient``'s data, as rows.

    ``grantees`` maps each requesting organisation's URA to its organisation types; ``holders`` are
    the URAs of the organisations holding the patient's data. ``purposes`` defaults to every
    purpose the consents name plus TREAT and its specialisations (ETREAT, BTG); a request for a
    purpose that was not enumerated matches no row, i.e. is denied. See the module docstring.
    """
    if action not in ACTIONS:
        raise InvalidRequest("consent_grants.action", f"{action!r} is not read or push")
    mine = [c for c in consents if c.patient == patient and c.status == "active"]
    provisions = [p for c in mine for p in c.root.walk()]
    holders = sorted(set(holders))

    uras, types, named_holders = _named_organisations(provisions)
    grantee_classes = _classes(
        sorted(grantees), lambda g: (g if g in uras else None, grantees[g] & types)
    )
    holder_classes = _classes(holders, lambda h: h if h in named_holders else None)
    leaf_sets = sorted({p.leaves for p in provisions if p.leaves is not None}, key=sorted)
    leaf_classes = _classes(sorted(LEAVES), lambda leaf: tuple(leaf in s for s in leaf_sets))
    purpose_sets = sorted({p.purposes for p in provisions if p.purposes is not None}, key=sorted)
    if purposes is None:
        purposes = PURPOSES["TREAT"].union(*purpose_sets)
    unknown = set(purposes) - PURPOSES.keys()
    if unknown:
        raise InvalidRequest(
            "consent_grants.purposes", f"purpose {sorted(unknown)[0]!r} is not known"
        )
    purposes = sorted(set(purposes))
    purpose_classes = _classes(purposes, lambda code: tuple(code in s for s in purpose_sets))
    times = _cells({t for p in provisions for t in (p.period_start, p.period_end) if t})
    dates = _cells({t for p in provisions for t in (p.data_start, p.data_end) if t})

    grants: list[ConsentGrant] = []
    for g_members, h_members, p_members in product(
        grantee_classes, holder_classes, purpose_classes
    ):
        grantee, holder, purpose = g_members[0], h_members[0], p_members[0]
        by_leaf: dict[str, tuple[_Window, ...]] = {}
        for l_members in leaf_classes:
            windows = _windows(
                mine,
                patient,
                holder,
                grantee,
                grantees[grantee],
                action,
                purpose,
                l_members[0],
                times,
                dates,
                policy,
            )
            for leaf in l_members:
                by_leaf[leaf] = windows
        for category, windows in _widest_categories(by_leaf):
            for g, h, p in product(g_members, h_members, p_members):
                grants.extend(_rows(g, h, category, p, windows))
    return grants


def _named_organisations(
    provisions: Sequence[Provision],
) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    uras: set[str] = set()
    types: set[str] = set()
    holders: set[str] = set()
    for p in provisions:
        if p.recipients is not None:
            uras |= p.recipients.uras
            types |= p.recipients.types
        if p.holders is not None:
            holders |= p.holders
    return frozenset(uras), frozenset(types), frozenset(holders)


def _classes(items: Iterable[str], key: Callable[[str], Hashable]) -> list[list[str]]:
    """Group ``items`` by ``key(item)``: members of a group are indistinguishable to the rules."""
    groups: dict[Hashable, list[str]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return list(groups.values())


def _cells(boundaries: set[datetime]) -> list[_Cell]:
    """The elementary intervals between boundaries, each with a representative timestamp."""
    points = sorted(boundaries)
    if not points:
        return [(None, None, 0.0)]
    cells: list[_Cell] = [(None, points[0], points[0].timestamp() - 1.0)]
    for lo, hi in pairwise(points):
        cells.append((lo, hi, lo.timestamp()))
    cells.append((points[-1], None, points[-1].timestamp()))
    return cells


def _windows(
    consents: Sequence[PatientConsent],
    patient: str,
    holder: str,
    grantee: str,
    grantee_types: frozenset[str],
    action: str,
    purpose: str,
    leaf: str,
    times: list[_Cell],
    dates: list[_Cell],
    policy: NetworkPolicy,
) -> tuple[_Window, ...]:
    """Validity windows (merged time cells) with the data rows permitted in each."""
    windows: list[_Window] = []
    for t_lo, t_hi, at in times:

        def permitted(data: float | None, at: float = at) -> tuple[bool, tuple[str, ...]]:
            o = evaluate(
                consents,
                patient,
                holder,
                grantee,
                grantee_types,
                action,
                purpose,
                leaf,
                at,
                data,
                policy,
            )
            return o.permit, o.consent_ids

        dated = [(lo, hi, *permitted(rep)) for lo, hi, rep in dates]
        rows = _data_rows(dated, permitted(None))
        if windows and windows[-1][2] == rows and windows[-1][1] == t_lo:
            windows[-1] = (windows[-1][0], t_hi, rows)
        elif rows:
            windows.append((t_lo, t_hi, rows))
    return tuple(w for w in windows if w[2])


def _data_rows(
    dated: list[tuple[datetime | None, datetime | None, bool, tuple[str, ...]]],
    undated: tuple[bool, tuple[str, ...]],
) -> tuple[_DataRow, ...]:
    """Merge permitted data-date cells into rows; one row when everything is permitted alike."""
    rows: list[_DataRow] = []
    for lo, hi, permit, ids in dated:
        if not permit:
            continue
        if rows and rows[-1][1] == lo and rows[-1][4] == ids:
            rows[-1] = (rows[-1][0], hi, True, False, ids)
        else:
            rows.append((lo, hi, True, False, ids))
    undated_permit, undated_ids = undated
    if undated_permit:
        if len(rows) == 1 and rows[0][:2] == (None, None) and rows[0][4] == undated_ids:
            return ((None, None, True, True, undated_ids),)
        rows.append((None, None, False, True, undated_ids))
    return tuple(rows)


def _widest_categories(
    by_leaf: Mapping[str, tuple[_Window, ...]],
) -> list[tuple[str, tuple[_Window, ...]]]:
    """Replace leaves with the widest categories whose leaves all share the same windows."""
    by_windows: dict[tuple[_Window, ...], set[str]] = defaultdict(set)
    for leaf, windows in by_leaf.items():
        if windows:
            by_windows[windows].add(leaf)
    found: list[tuple[str, tuple[_Window, ...]]] = []
    for windows, leaves in by_windows.items():

        def cover(
            node: str, leaves: set[str] = leaves, windows: tuple[_Window, ...] = windows
        ) -> None:
            below = LEAVES_BELOW[node]
            if below <= leaves:
                found.append((node, windows))
            elif not below.isdisjoint(leaves):
                for child in CHILDREN[node]:
                    cover(child)

        cover(ROOT)
    return sorted(found, key=lambda item: item[0])


def _rows(
    grantee: str, holder: str, category: str, purpose: str, windows: tuple[_Window, ...]
) -> list[ConsentGrant]:
    return [
        ConsentGrant(
            grantee,
            holder,
            category,
            purpose,
            valid_from,
            valid_to,
            d_from,
            d_to,
            dated,
            undated,
            ids,
        )
        for valid_from, valid_to, rows in windows
        for d_from, d_to, dated, undated, ids in rows
    ]
