"""FHIR date, dateTime and instant values as ranges of UTC microseconds since the epoch.

A partial date is the range it covers (``2024`` is the whole year), which is how FHIR date search
compares values; the upper bound is inclusive.
"""

from __future__ import annotations

import calendar
import functools
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -(2**62)
MAX_US = 2**62

_DATE = re.compile(
    r"^(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2}):(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?"
    r"(?P<tz>Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?$"
)
_DAY_US = 86_400_000_000


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def instant(us: int) -> str:
    """FHIR instant text of a point in time, e.g. ``2026-11-22T20:57:36.123456Z``."""
    seconds, micros = divmod(us, 1_000_000)
    return f"{_instant_second(seconds)}.{micros:06d}Z"


def http_date(us: int) -> str:
    """The HTTP date (RFC 9110 IMF-fixdate) of a point in time, to the second."""
    return _http_date_second(us // 1_000_000)


# Every request writes a few of these, nearly all within the same second; formatting them
# through datetime took ~4% of a read's CPU (py-spy).
@functools.lru_cache(maxsize=64)
def _instant_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


@functools.lru_cache(maxsize=64)
def _http_date_second(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


# A write parses each of its dates several times (clinical date, search index, content
# consent), and an ITI-65 push's came to 2% of its CPU (py-spy); the result is immutable.
@functools.lru_cache(maxsize=4096)
def date_range(value: str) -> tuple[int, int] | None:
    """The inclusive range of microseconds a FHIR date/dateTime/instant covers, or None. A
    value covers its precision: ``2024`` the year, ``…T10:00:00.123`` the millisecond (finer
    than a microsecond: the microsecond). Worked out in microseconds, so that the year 9999 and
    offsets at the ends of the calendar do not overflow ``datetime``."""
    match = _DATE.match(value)
    if match is None:
        return None
    g = match.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=UTC)
            length = (366 if calendar.isleap(year) else 365) * _DAY_US
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=UTC)
            length = calendar.monthrange(year, month)[1] * _DAY_US
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=UTC)
            length = _DAY_US
        else:
            fraction = g["f"] or ""
            start = datetime(
                year,
                int(g["m"]),
                int(g["d"]),
                int(g["H"]),
                int(g["M"]),
                int(g["S"] or 0),
                int(fraction[:6].ljust(6, "0")) if fraction else 0,
                tzinfo=UTC,
            )
            if fraction:
                length = 10 ** max(0, 6 - len(fraction))
            else:
                length = 1_000_000 if g["S"] is not None else 60_000_000
    except ValueError:
        return None
    first = to_us(start)
    if g["tz"] and g["tz"] != "Z":
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        if hours > 14 or minutes > 59:  # FHIR's offsets run from -12:00 to +14:00
            return None
        first -= (1 if g["tz"][0] == "+" else -1) * (hours * 60 + minutes) * 60_000_000
    return first, first + length - 1
