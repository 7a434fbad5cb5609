"""FHIR date and dateTime values as half-open ranges of instants (Dutch time for dates)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from consent._fhirtime import fhir_period, fhir_range

CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    "value, lo, hi",
    [
        ("2025", datetime(2025, 1, 1, tzinfo=CET), datetime(2026, 1, 1, tzinfo=CET)),
        ("2025-12", datetime(2025, 12, 1, tzinfo=CET), datetime(2026, 1, 1, tzinfo=CET)),
        ("2025-07-14", datetime(2025, 7, 14, tzinfo=CEST), datetime(2025, 7, 15, tzinfo=CEST)),
        # The day DST starts is 23 hours long.
        ("2025-03-30", datetime(2025, 3, 30, tzinfo=CET), datetime(2025, 3, 31, tzinfo=CEST)),
        (
            "2016-06-23T17:02:33+10:00",
            datetime(2016, 6, 23, 7, 2, 33, tzinfo=UTC),
            datetime(2016, 6, 23, 7, 2, 34, tzinfo=UTC),
        ),
        (
            "2016-06-23T07:02:33.25Z",
            datetime(2016, 6, 23, 7, 2, 33, 250000, tzinfo=UTC),
            datetime(2016, 6, 23, 7, 2, 33, 260000, tzinfo=UTC),
        ),
    ],
)
def test_fhir_range(value, lo, hi):
    assert fhir_range(value) == (lo, hi)


@pytest.mark.parametrize(
    "value", ["2025-1-01", "2025-01-01T10:00:00", "2025-01-01T10:00Z", 2025, "x"]
)
def test_malformed_values_are_refused(value):
    with pytest.raises(ValueError):
        fhir_range(value)


def test_period_end_includes_its_whole_unit():
    start, end = fhir_period({"start": "2025-01-01", "end": "2025-01-31"})
    assert end - start == timedelta(days=31)
    assert fhir_period({}) == (None, None)
