"""SMPP-style delivery receipts, as SMS-over-SIP carriers put them in the body
of a report MESSAGE:

    id:<ref> sub:001 dlvrd:001 submit date:2611271200 done date:2611271200
    stat:DELIVRD err:000 text:first 20 chars

`id` is the reference we put on the outgoing MESSAGE (X-Amivono-Ref: the
attempt's id)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Keys may hold a space ("submit date"); `text:` runs to the end.
_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


@dataclass(frozen=True)
class Receipt:
    ref: int
    stat: str   # DELIVRD, UNDELIV, REJECTD, EXPIRED, DELETED, UNKNOWN, ACCEPTD
    error: str

    @property
    def delivered(self) -> bool:
        return self.stat == "DELIVRD"


class NotAReceipt(ValueError):
    pass


def parse_receipt(body: str) -> Receipt:
    head = re.split(r"\btext:", body, maxsplit=1, flags=re.IGNORECASE)[0]
    fields = {k.lower(): v for k, v in _FIELD.findall(head)}
    ref, stat = fields.get("id", ""), fields.get("stat", "").upper()
    if not ref.isascii() or not ref.isdigit() or len(ref) > 18 or not stat:
        raise NotAReceipt(f"not a delivery receipt: {body[:80]!r}")
    return Receipt(ref=int(ref), stat=stat, error=fields.get("err", ""))
