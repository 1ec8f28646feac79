"""The API's timestamps: ISO 8601 in UTC to the second, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from service.domain.timestamps import iso


def test_iso_is_utc_to_the_second_whatever_the_zone():
    stockholm = timezone(timedelta(hours=1))
    cases = [
        (datetime(2026, 11, 27, 17, 5, 9, 999_999, tzinfo=UTC), "2026-11-27T17:05:09Z"),
        (datetime(2026, 1, 1, 0, 30, 0, tzinfo=stockholm), "2025-12-31T23:30:00Z"),
        (datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC), "2026-03-04T05:06:07Z"),
    ]
    for value, expected in cases:
        assert iso(value) == expected
        assert iso(value) == value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert iso(None) is None
