"""Timestamps: HL7 v2 DTM/TS and CDA TS (``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][±ZZZZ]``) and ISO 8601
to FHIR ``date``, ``dateTime`` and ``instant``.

FHIR requires a time zone on every time of day, while HL7 and CDA allow local times. A time without
an offset is read in the sender's zone (``SourceInfo.timezone``, Europe/Amsterdam by default), with
the daylight-saving offset of that date. Precision is kept: ``200802`` stays ``2008-02``. Every
function returns None for a value that is not a real date (month 13, 30 February, hour 25), so the
caller can report it at its own location instead of producing an invalid resource.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

_HL7_TS = re.compile(
    r"(?P<y>\d{4})(?:(?P<mo>\d{2})(?:(?P<d>\d{2})(?:(?P<h>\d{2})(?:(?P<mi>\d{2})"
    r"(?:(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?)?)?)?)?(?P<tz>[+-]\d{4})?"
)
_ISO = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})(?:[T ](?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?"
)


def _offset(text: str | None) -> tzinfo | None:
    """A fixed offset from ``+0215``/``+02:15``/``Z``; None when absent or out of range."""
    if text is None:
        return None
    if text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _format_offset(moment: datetime) -> str:
    delta = moment.utcoffset() or timedelta(0)
    total = int(delta.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _iso_seconds(moment: datetime) -> str:
    # Not strftime: its %Y does not zero-pad years before 1000 on every platform.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )


def _render(match: re.Match[str], zone: tzinfo, *, instant: bool) -> str | None:
    parts = match.groupdict()
    try:
        year = int(parts["y"])
        if year < 1:
            return None
        month = int(parts["mo"]) if parts["mo"] else None
        day = int(parts["d"]) if parts["d"] else None
        if parts["h"] is None:
            if instant or (month is None and parts["d"]):
                return None
            # Check the date is real, then keep the precision it was given in.
            date(year, 1 if month is None else month, 1 if day is None else day)
            if day is not None:
                return f"{year:04d}-{month:02d}-{day:02d}"
            return f"{year:04d}-{month:02d}" if month is not None else f"{year:04d}"
        if month is None or day is None:
            return None
        hour, minute = int(parts["h"]), int(parts["mi"] or 0)
        second = int(parts["s"] or 0)
        offset = _offset(parts["tz"])
        moment = datetime(year, month, day, hour, minute, second)
        moment = moment.replace(tzinfo=offset or zone)
    except ValueError:
        return None
    fraction = f".{parts['f']}" if parts.get("f") else ""
    return _iso_seconds(moment) + fraction + _format_offset(moment)


def hl7_datetime(text: str, zone: tzinfo) -> str | None:
    """FHIR ``dateTime`` (or a date of the same precision) from an HL7 v2/v3 timestamp."""
    match = _HL7_TS.fullmatch(text.strip())
    return _render(match, zone, instant=False) if match else None


def hl7_date(text: str) -> str | None:
    """FHIR ``date`` from an HL7 timestamp, dropping any time of day (for birth dates)."""
    match = _HL7_TS.fullmatch(text.strip())
    if not match:
        return None
    year, month, day = match.group("y", "mo", "d")
    digits = year + (month or "") + (day or "")
    return _render(_HL7_TS.fullmatch(digits), UTC, instant=False)  # type: ignore[arg-type]


def hl7_instant(text: str, zone: tzinfo) -> str | None:
    """FHIR ``instant`` from an HL7 timestamp precise to the minute at least, else None."""
    match = _HL7_TS.fullmatch(text.strip())
    if not match or match.group("mi") is None:
        return None
    return _render(match, zone, instant=True)


def iso_datetime(text: str, zone: tzinfo) -> str | None:
    """FHIR ``dateTime`` (or date) from ISO 8601 text such as ``2019-02-17T10:24:41Z``."""
    match = _ISO.fullmatch(text.strip())
    return _render(match, zone, instant=False) if match else None


def iso_date(text: str) -> str | None:
    """FHIR ``date`` from ISO 8601 text, dropping any time of day."""
    match = _ISO.fullmatch(text.strip())
    if not match:
        return None
    return iso_datetime("-".join(p for p in match.group("y", "mo", "d") if p), UTC)


def strptime_datetime(text: str, fmt: str, zone: tzinfo) -> str | None:
    """FHIR ``dateTime`` from text in a ``strptime`` format (CSV profiles with local formats)."""
    try:
        moment = datetime.strptime(text.strip(), fmt)
    except ValueError:
        return None
    if moment.year < 1:
        return None
    has_time = any(code in fmt for code in ("%H", "%I", "%M", "%S", "%X", "%c"))
    if not has_time:
        return _iso_seconds(moment)[:10]
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return _iso_seconds(moment) + _format_offset(moment)


def is_after(first: str, second: str) -> bool:
    """True when FHIR dateTime ``first`` is later than ``second``; False when not comparable."""
    if "T" not in first or "T" not in second:
        return first[:10] > second[:10] if len(first) >= 10 and len(second) >= 10 else False
    try:
        return datetime.fromisoformat(first) > datetime.fromisoformat(second)
    except ValueError:
        return False


def now_hl7() -> str:
    """The current UTC time as an HL7 DTM with offset, for generated ACKs."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
