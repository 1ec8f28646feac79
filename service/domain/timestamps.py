"""Times as the API writes them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second, as the spec writes it."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(value: datetime) -> str:
    """ISO 8601 in UTC to the millisecond (a webhook event's timestamp)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
