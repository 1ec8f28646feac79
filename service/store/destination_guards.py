"""The destination guards that need the database: the account's allowed
countries (NULL: the AMIVONO_ALLOWED_COUNTRIES setting) and the hourly cap
of messages per account and destination, against loops and SMS pumping.

The cap counts messages accepted (rows created, SMS and voice together), not
sends: a message with `repeat` counts once, an idempotent replay not at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.domain.destinations import country, country_allowed, parse_countries
from service.domain.refusals import FieldError, Reason, Refused, validation_failed
from service.domain.request_fields import destination_not_allowed
from service.domain.statuses import FieldCode
from service.settings import Settings
from service.store.database import Executor
from service.store.queries import queries

HOUR_SECONDS = 3600


async def check(conn: Executor, account_id: int, to_number: str, settings: Settings,
                resource: str) -> None:
    """Refused (422) when the account may not send to `to_number`'s country,
    (429, Retry-After) when it has had its messages to it for this hour. In
    the creating transaction: the count holds until it commits. (check_many
    for one create; its sender is the create's to check.)"""
    [checked] = await check_many(conn, [(account_id, to_number, to_number, True)], settings,
                                 resource)
    if checked.refused is not None:
        raise checked.refused


# A create of a batch as check_many takes it: (account, to, from, any_sender).
Wanted = tuple[int, str, str, bool]


@dataclass(frozen=True)
class Checked:
    """check_many's answer for one create."""
    refused: Refused | None  # what `check` refuses
    owned: bool  # its sender is the account's (or any may send)
    opted_out: bool  # `to` sent STOP to the account

    @property
    def makes_row(self) -> bool:
        return self.owned and not self.opted_out


async def check_many(conn: Executor, wanted: list[Wanted], settings: Settings,
                     resource: str) -> list[Checked]:
    """`check` for each create of a batch, in order, in two statements: a
    number's earlier creates in the batch count against the cap of its later
    ones, except those that will make no row (sender not the account's, or
    `to` opted out), as if each had come alone."""
    cap = settings.destination_cap_per_hour
    accounts = [w[0] for w in wanted]
    numbers = [w[1] for w in wanted]
    if cap:
        await queries.accounts.lock_destinations(conn, account_ids=accounts,
                                                 to_numbers=numbers)
    rows = await queries.accounts.destination_checks(
        conn, account_ids=accounts, to_numbers=numbers, from_numbers=[w[2] for w in wanted],
        any_senders=[w[3] for w in wanted], cap=cap)
    taken: Counter[tuple[int, str]] = Counter()
    out: list[Checked] = []
    for (account_id, to_number, *_), row in zip(wanted, rows, strict=True):
        key = (account_id, to_number)
        refused = refusal(row, to_number, settings, resource, taken[key])
        checked = Checked(refused, row["owned"], row["opted_out"])
        if refused is None and checked.makes_row:
            taken[key] += 1
        out.append(checked)
    return out


def refusal(row: Mapping[str, Any], to_number: str, settings: Settings, resource: str,
            taken: int = 0) -> Refused | None:
    """What `check` refuses, from its statement's row (`taken`: creates to
    the number already made in the same transaction, not in the row)."""
    cap = settings.destination_cap_per_hour
    stored = row["allowed_countries"]
    allowed = parse_countries([settings.allowed_countries]) if stored is None else list(stored)
    if not country_allowed(to_number, allowed):
        return validation_failed([destination_not_allowed(
            resource, f"{to_number} is in {country(to_number)}; this account may send to "
                      f"{' '.join(allowed)} only")])
    if cap and row["last_hour"] + taken >= cap:
        message = (f"Destination cap reached: at most {cap} messages per hour from this "
                   f"account to {to_number}")
        # No earlier message in the hour: the batch's own first frees a place.
        frees_in = row["frees_in"] or (HOUR_SECONDS if taken else 1)
        return Refused(Reason.RATE_LIMITED, message,
                       [FieldError(resource, "to", FieldCode.DESTINATION_CAP, message)],
                       headers={"Retry-After": str(max(1, frees_in))})
    return None
