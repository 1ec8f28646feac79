"""SMS length beyond the basics in test_sms_text.py: which encoding a mixed
text takes, what each character costs in it, and where the segment limits fall."""

from __future__ import annotations

import pytest

from service.domain import sms_text
from service.domain.sms_text import GSM7, UCS2, Encoded, encoding_of, measure

EXTENSION = "\f^{}\\[~]|€"


def test_the_limits_are_140_octets() -> None:
    assert sms_text.SINGLE_LIMIT == {GSM7: 160, UCS2: 70}
    # A concatenated part loses 6 octets to its header: 7 septets or 3 UCS-2 units.
    assert sms_text.MULTIPART_LIMIT == {GSM7: 153, UCS2: 67}


@pytest.mark.parametrize("ch", list(EXTENSION))
def test_each_extension_character_is_an_escape_and_a_septet(ch: str) -> None:
    assert measure("a" + ch + "a") == Encoded(GSM7, 4)


def test_euro_costs_two_septets_but_one_ucs2_unit() -> None:
    assert measure("€") == Encoded(GSM7, 2)
    assert measure("€", UCS2) == Encoded(UCS2, 1)
    # One character outside GSM-7 moves the whole text to UCS-2, where € is one unit.
    assert measure("€5 ç") == Encoded(UCS2, 4)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("😀", 2),  # beyond the BMP: a surrogate pair
        ("😀😀", 4),
        ("🇸🇪", 4),  # a flag is two regional indicators, each a pair
        ("👍🏽", 4),  # emoji and skin-tone modifier
        ("e\u0301", 2),  # decomposed é: e and a combining accent, not GSM-7 é
        ("中文", 2),  # BMP characters: one unit each
    ],
)
def test_ucs2_counts_utf16_code_units(text: str, units: int) -> None:
    assert measure(text) == Encoded(UCS2, units)


def test_encoding_of() -> None:
    assert encoding_of("") == GSM7
    assert encoding_of("Hej på dig! {x} €") == GSM7
    assert encoding_of("Hej 😀") == UCS2
    assert encoding_of("naïve") == UCS2  # ï is not in GSM 03.38
    assert encoding_of("\t") == UCS2  # nor is a tab


def test_forced_gsm7_still_counts_escapes() -> None:
    assert measure("[]", GSM7) == Encoded(GSM7, 4)


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 159 + "€", 2),  # 161 septets: the escape tips it over
        ("a" * 158 + "€", 1),  # 160 septets
        ("€" * 80, 1),  # 160 septets in 80 characters
        ("€" * 81, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("😀" * 35, 1),  # 70 code units in 35 characters
        ("😀" * 36, 2),
        ("ç" * 70, 1),
        ("ç" * 71, 2),
        ("ç" * 134, 2),
        ("ç" * 135, 3),
    ],
)
def test_segments_of_text(text: str, segments: int) -> None:
    assert measure(text).segments == segments
