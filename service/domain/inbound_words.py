"""What an inbound SMS asks for: STOP and its synonyms, START, HELP, or
nothing (a reply). The whole message counts, trimmed and case-insensitive,
as carriers and the CTIA's keyword rules do: "stop the alarm" is a reply."""

from __future__ import annotations

from service.domain.statuses import InboundKind

STOP_WORDS = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE")
START_WORDS = ("START", "UNSTOP", "YES")
HELP_WORDS = ("HELP", "INFO")


def word_list(text: str) -> tuple[str, ...]:
    """A comma-separated setting as upper-case words."""
    return tuple(w.strip().upper() for w in text.split(",") if w.strip())


def kind_of(text: str, extra_stop_words: tuple[str, ...] = ()) -> InboundKind:
    word = text.strip().upper()
    if word in STOP_WORDS or word in extra_stop_words:
        return InboundKind.STOP
    if word in START_WORDS:
        return InboundKind.START
    if word in HELP_WORDS:
        return InboundKind.HELP
    return InboundKind.REPLY
