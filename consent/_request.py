"""The question put to the policy decision point: may this actor do this with these data now?"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from consent._categories import LEAVES, LINEAGE, leaves_for_type
from consent._errors import InvalidRequest
from consent._fhirtime import day_start, local_date
from consent._terminology import ACTIONS, PURPOSES

Action = Literal["read", "push"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    """One access to one patient's data, as the gateway asks about it.

    ``actor_org`` is the organisation that gets to see the data: for ``read`` the organisation of
    the reading actor, for ``push`` the addressee the holder sends the data to. ``holder_org`` is
    the organisation whose data it is. ``patient`` is the patient key (the BSN). ``categories``
    must be what ``categories_of`` returns for the resource. ``data_date`` is the clinical date of
    the data (for ``dataPeriod`` rules; a date is read as the start of that day in Dutch time),
    None when the resource has none. ``at`` is when the access happens, timezone-aware.
    ``actor_id`` is matched against emergency declarations; ``actor_role`` is carried for the
    audit record only, because consents are enforced per organisation.
    """

    actor_org: str
    actor_org_types: frozenset[str]
    actor_id: str
    actor_role: str
    holder_org: str
    patient: str
    purpose: str
    action: Action
    resource_type: str
    categories: frozenset[str]
    at: datetime
    data_date: date | datetime | None = None
    # Derived once, for the hot path.
    leaf: str = field(init=False, repr=False, compare=False)
    at_ts: float = field(init=False, repr=False, compare=False)
    data_ts: float | None = field(init=False, repr=False, compare=False)
    day: date = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise InvalidRequest("AccessRequest.at", "must be timezone-aware")
        if self.action not in ACTIONS:
            raise InvalidRequest("AccessRequest.action", f"{self.action!r} is not read or push")
        if self.purpose not in PURPOSES:
            raise InvalidRequest("AccessRequest.purpose", f"purpose {self.purpose!r} is not known")
        leaves = self.categories & LEAVES
        if len(leaves) != 1:
            raise InvalidRequest(
                "AccessRequest.categories", "must be categories_of(...) of one resource"
            )
        (leaf,) = leaves
        if self.categories != LINEAGE[leaf] or leaf not in leaves_for_type(self.resource_type):
            raise InvalidRequest(
                "AccessRequest.categories",
                f"{sorted(self.categories)} is not categories_of({self.resource_type!r})",
            )
        put = object.__setattr__
        put(self, "leaf", leaf)
        put(self, "at_ts", self.at.timestamp())
        put(self, "day", local_date(self.at))
        put(self, "data_ts", _data_ts(self.data_date))


def _data_ts(value: date | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRequest("AccessRequest.data_date", "a datetime must be timezone-aware")
        return value.timestamp()
    return day_start(value).timestamp()
