"""Numbers that look like dial-string, SIP-URI or AMI injection are refused
by the E.164 check (more cases beside test_phone_numbers.py)."""

from __future__ import annotations

import pytest

from service.domain import phone_numbers
from service.domain.phone_numbers import E164_PATTERN, E164_SHAPE, InvalidNumber, parse_e164

VALID = "+46736265400"

INJECTIONS = [
    "500&PJSIP/other",
    "+46@x",
    "+46736265400&PJSIP/other",
    "+46736265400@carrier",
    "sip:+46736265400@carrier",
    "tel:+46736265400",
    "+46736265400\nAction: Originate",
    "+46736265400\r",
    "+46736265400\x00",
    "\n+46736265400",
    " +46736265400",
    "+46736265400 ",
    "+46-73-626-54-00",
    "+46(0)736265400",
    "++46736265400",
    "＋46736265400",  # full-width plus
    "+46736265400\u200b",  # zero-width space
    "+467362654OO",  # letter O for zero
    "+４6736265400",  # one full-width digit
    "+46736265400,1",
    "+46736265400|1",
    "+4٦٧٣٦٢٦٥٤٠٠",  # Arabic-Indic digits after an ASCII one
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_looking_input_is_refused(value: str) -> None:
    with pytest.raises(InvalidNumber):
        parse_e164(value)


def test_any_foreign_character_anywhere_is_refused() -> None:
    taken = []
    for ch in "&/@;:,|<>'\"()\\ \t\r\n#*?=%!$`{}[]~^x\x00":
        for i in range(1, len(VALID) + 1):
            value = VALID[:i] + ch + VALID[i:]
            try:
                parse_e164(value)
            except InvalidNumber:
                continue
            taken.append(value)
    assert taken == []


@pytest.mark.parametrize("value", [b"+46736265400", 46736265400, True, 4.6e10, {"n": VALID}])
def test_only_str_is_taken(value: object) -> None:
    with pytest.raises(InvalidNumber, match="string"):
        parse_e164(value)


def test_shape_is_ascii_digits_only() -> None:
    assert E164_SHAPE.fullmatch(VALID)
    assert not E164_SHAPE.fullmatch("+٤٦٧٣٦٢٦٥٤٠٠")
    assert not E164_SHAPE.fullmatch("+4٦٧٣٦٢٦٥٤٠٠")


def test_phonenumbers_never_sees_text_of_the_wrong_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    # phonenumbers would normalise spaces, letters and non-ASCII digits, so the
    # shape check comes first and alone decides on these.
    seen: list[str] = []
    real = phone_numbers.phonenumbers.parse

    def spy(number: str, region: str | None = None) -> object:
        seen.append(number)
        return real(number, region)

    monkeypatch.setattr(phone_numbers.phonenumbers, "parse", spy)
    for value in INJECTIONS:
        with pytest.raises(InvalidNumber, match="E.164 form: '[+]' then"):
            parse_e164(value)
    assert seen == []
    assert E164_PATTERN.startswith("\\+") and "$" not in E164_PATTERN


def test_invalid_number_is_a_value_error_and_names_the_rule() -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        parse_e164("500&PJSIP/other")


def test_refusals_are_not_cached_as_valid() -> None:
    for _ in range(3):
        with pytest.raises(InvalidNumber):
            parse_e164("+46@x")
    assert parse_e164(VALID) == VALID
