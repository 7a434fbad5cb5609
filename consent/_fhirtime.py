"""FHIR date, dateTime and Period values as half-open ranges of instants.

A FHIR value covers the whole unit of its precision: ``2016-01-01`` is that entire day, ``2016-05``
the entire month, ``2016-06-23T17:32:33+10:00`` that entire second. A value is read as the range
``[lo, hi)``; a Period as ``[start.lo, end.hi)``, so a Period ending on a date includes that day.
Values without a time are read in Dutch local time (Europe/Amsterdam), which is where the consents
are given. A time without a time zone is refused: FHIR requires the zone whenever a time is given.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, Final
from zoneinfo import ZoneInfo

AMSTERDAM: Final = ZoneInfo("Europe/Amsterdam")

_VALUE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def fhir_range(value: Any) -> tuple[datetime, datetime]:
    """The instants ``[lo, hi)`` a FHIR date or dateTime string covers; ValueError if malformed."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a FHIR date or dateTime")
    match = _VALUE.fullmatch(value)
    if match is None:
        raise ValueError(f"'{value}' is not a FHIR date or dateTime")
    g = match.groupdict()
    year = int(g["y"])
    if g["m"] is None:
        return _local(year, 1, 1), _local(year + 1, 1, 1)
    month = int(g["m"])
    if g["d"] is None:
        after = (year + 1, 1) if month == 12 else (year, month + 1)
        return _local(year, month, 1), _local(*after, 1)
    day = int(g["d"])
    if g["H"] is None:
        lo = _local(year, month, day)
        return lo, _local_next_day(lo)
    if g["tz"] is None:
        raise ValueError(f"'{value}' has a time but no time zone")
    if g["S"] is None:
        raise ValueError(f"'{value}' has a time without seconds")
    tz = UTC if g["tz"] == "Z" else _offset(g["tz"])
    fraction = g["f"] or ""
    micro = int((fraction + "000000")[:6])
    lo = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"]), micro, tzinfo=tz)
    step = timedelta(microseconds=10 ** max(0, 6 - len(fraction))) if fraction else timedelta(0, 1)
    return lo, lo + step


def fhir_period(period: Any) -> tuple[datetime | None, datetime | None]:
    """A FHIR Period as ``(start, end)`` with ``end`` exclusive; None means open on that side."""
    if not isinstance(period, dict):
        raise ValueError("a Period must be an object")
    start = fhir_range(period["start"])[0] if "start" in period else None
    end = fhir_range(period["end"])[1] if "end" in period else None
    if start is not None and end is not None and start >= end:
        raise ValueError(f"start {period['start']} is not before end {period['end']}")
    return start, end


def day_start(day: date) -> datetime:
    """The first instant of a calendar day in Dutch local time."""
    return _local(day.year, day.month, day.day)


def local_date(instant: datetime) -> date:
    """The calendar day an instant falls on in Dutch local time."""
    return instant.astimezone(AMSTERDAM).date()


def _local(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=AMSTERDAM)


def _local_next_day(lo: datetime) -> datetime:
    following = lo.date() + timedelta(days=1)
    return _local(following.year, following.month, following.day)


def _offset(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    return timezone(sign * timedelta(hours=hours, minutes=minutes))
