"""Times as the API writes them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, to the second, as the spec writes it."""
    if value is None:
        return None
    # isoformat, not strftime: a tenth of the time, and the API writes many.
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def iso_ms(value: datetime) -> str:
    """ISO 8601 in UTC to the millisecond (a webhook event's timestamp)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
