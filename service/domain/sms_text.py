"""SMS text encoding: GSM 03.38 7-bit or UCS-2, and the length it costs.

An SMS holds 140 octets: 160 GSM-7 septets or 70 UCS-2 code units. A
character of the GSM-7 extension table (such as the euro sign or brackets)
takes two septets, an escape and the character. Text with any character
outside GSM-7 is sent as UCS-2, where a character beyond the Basic
Multilingual Plane (most emoji) takes two code units.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"
SINGLE_LIMIT = {GSM7: 160, UCS2: 70}
# Units per segment once the text needs a concatenation header.
MULTIPART_LIMIT = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True)
class Encoded:
    encoding: str
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2

    @property
    def segments(self) -> int:
        if self.units <= SINGLE_LIMIT[self.encoding]:
            return 1
        per = MULTIPART_LIMIT[self.encoding]
        return -(-self.units // per)


def encoding_of(text: str) -> str:
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def measure(text: str, encoding: str | None = None) -> Encoded:
    """Length of `text` in the units of its encoding (or the one given)."""
    encoding = encoding or encoding_of(text)
    if encoding == GSM7:
        return Encoded(GSM7, sum(2 if c in GSM7_EXTENSION else 1 for c in text))
    return Encoded(UCS2, len(text.encode("utf-16-le")) // 2)


# Letters that render as nothing: Hangul fillers and the blank Braille cell.
BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
VISIBLE_CATEGORIES = ("L", "N", "P", "S")


def has_visible(text: str) -> bool:
    """True when some character of `text` shows: a letter, digit, punctuation
    mark or symbol (Unicode categories L, N, P, S), other than the blank ones
    above. Spaces and separators (Z), controls, format characters such as the
    zero-width space and joiners (Cc, Cf), private-use and unassigned code
    points (Co, Cn) and combining marks (M) alone do not."""
    return any(unicodedata.category(c)[0] in VISIBLE_CATEGORIES and c not in BLANK_LETTERS
               for c in text)


# Line breaks at the end of a text do not survive the way to the phone (the
# SIP MESSAGE path drops them): they are removed before the text is stored.
TRAILING_BREAKS = "\r\n"


def normalise(text: str) -> str:
    """The text as it will be stored and sent."""
    return text.rstrip(TRAILING_BREAKS)
