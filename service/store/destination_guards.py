"""The destination guards that need the database: the account's allowed
countries (NULL: the AMIVONO_ALLOWED_COUNTRIES setting) and the hourly cap
of messages per account and destination, against loops and SMS pumping.

The cap counts messages accepted (rows created, SMS and voice together), not
sends: a message with `repeat` counts once, an idempotent replay not at all.
"""

from __future__ import annotations

from service.domain.destinations import country, country_allowed, parse_countries
from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.domain.request_fields import destination_not_allowed
from service.domain.statuses import FieldCode
from service.settings import Settings
from service.store.database import Executor
from service.store.queries import queries


async def check(conn: Executor, account_id: int, to_number: str, settings: Settings,
                resource: str) -> None:
    """Refused (422) when the account may not send to `to_number`'s country,
    (429, Retry-After) when it has had its messages to it for this hour. In
    the creating transaction: the count holds until it commits."""
    cap = settings.destination_cap_per_hour
    if cap:  # no cap, nothing to count exactly: no lock
        await queries.accounts.lock_destination(conn, account_id=account_id,
                                                to_number=to_number)
    row = await queries.accounts.destination_check(conn, account_id=account_id,
                                                   to_number=to_number, cap=cap)
    stored = row["allowed_countries"]
    allowed = parse_countries([settings.allowed_countries]) if stored is None else list(stored)
    if not country_allowed(to_number, allowed):
        raise validation_failed([destination_not_allowed(
            resource, f"{to_number} is in {country(to_number)}; this account may send to "
                      f"{' '.join(allowed)} only")])
    if cap and row["last_hour"] >= cap:
        message = (f"Destination cap reached: at most {cap} messages per hour from this "
                   f"account to {to_number}")
        raise Refused(Reason.RATE_LIMITED, message,
                      [FieldError(resource, "to", FieldCode.DESTINATION_CAP, message)],
                      headers={"Retry-After": str(max(1, row["frees_in"] or 1))})
