"""E.164 phone numbers: the only form a number may take inside the gateway.

Anything that reaches a dial string, a SIP URI or an AMI value has passed
through `parse_e164`, so it is a '+' and ASCII digits and nothing else.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

# The one spelling of E.164 in the gateway: '+' then 2 to 15 ASCII digits.
# Unanchored (JSON Schema wants it as f"^{E164_PATTERN}$"); match with fullmatch.
E164_PATTERN = r"\+[1-9][0-9]{1,14}"
# Checked before phonenumbers sees the text: phonenumbers itself would
# happily normalise spaces, letters and non-ASCII digits.
E164_SHAPE = re.compile(E164_PATTERN, re.ASCII)


class InvalidNumber(ValueError):
    pass


def parse_e164(value: object) -> str:
    """Return `value` as a validated E.164 number, or raise InvalidNumber."""
    if not isinstance(value, str):
        raise InvalidNumber("must be a string in E.164 form, like +46736265400")
    return _parse(value)


@functools.lru_cache(maxsize=65536)
def _parse(value: str) -> str:
    # Cached: phonenumbers' metadata lookups were a tenth of the API's time,
    # and the same few numbers come again and again. Errors are not cached.
    if not E164_SHAPE.fullmatch(value):
        raise InvalidNumber("must be in E.164 form: '+' then 2 to 15 ASCII digits, nothing else")
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("is not a valid number for its country")
    normalised = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if normalised != value:
        raise InvalidNumber(f"must be written in E.164 form: {normalised}")
    return normalised
