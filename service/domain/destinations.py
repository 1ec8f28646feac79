"""Which destinations a message may go to: the number's type (from
phonenumbers' metadata) and its country. Pure rules; the per-account
country list and the hourly cap per destination are the store's
(service/store/destination_guards.py).

Refused by type, whatever the account: premium-rate (+1 900, UK 09,
Swedish 0939, +979), shared-cost, satellite and unknown. phonenumbers has no
satellite type (+8816 is a valid MOBILE of region 001), so satellite is told
by its ITU calling code: 870 (Inmarsat), 881 (Iridium, Globalstar and the
other GMSS networks) and 882 (international networks, Thuraya among them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import phonenumbers
from phonenumbers import PhoneNumberType

REFUSED_TYPES: dict[int, str] = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
    PhoneNumberType.UNKNOWN: "a number of unknown type",
}
SATELLITE_CODES = frozenset({870, 881, 882})
NON_GEOGRAPHIC = "001"  # phonenumbers' region for +800, +870, +979 and such


# Cached like phone_numbers._parse: phonenumbers' metadata lookups are costly
# on the accept path, and the same numbers come again and again.
@functools.lru_cache(maxsize=65536)
def refused_type(number: str) -> str | None:
    """Why `number` (validated E.164) may not be a destination, or None."""
    parsed = phonenumbers.parse(number, None)
    if parsed.country_code in SATELLITE_CODES:
        return "a satellite number"
    return REFUSED_TYPES.get(phonenumbers.number_type(parsed))


@functools.lru_cache(maxsize=65536)
def country(number: str) -> str:
    """ISO 3166 code of `number`'s country ("001" when it has none)."""
    region = phonenumbers.region_code_for_number(phonenumbers.parse(number, None))
    return region or NON_GEOGRAPHIC


def parse_countries(words: Iterable[str]) -> list[str]:
    """Country codes as an operator writes them ("se no"): upper-cased,
    deduplicated in order; ValueError for anything phonenumbers does not know."""
    out: list[str] = []
    for word in words:
        for code in word.replace(",", " ").split():
            code = code.upper()
            if code not in phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"{code!r} is not an ISO 3166 country code phonenumbers knows")
            if code not in out:
                out.append(code)
    return out


def country_allowed(number: str, allowed: Iterable[str]) -> bool:
    """True when `allowed` is empty (every country) or holds `number`'s country."""
    allowed = list(allowed)
    return not allowed or country(number) in allowed
