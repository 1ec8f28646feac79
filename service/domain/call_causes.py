"""How a call ended, from what we saw of it and the Q.850 cause Asterisk gave
when its channel went: the outcome, and whether a retry is worth it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Q.850 causes of a call that was never answered -> (outcome, worth a retry).
CAUSES: dict[int, tuple[str, bool]] = {
    0: ("no-answer", True),    # some versions report 0 for an originate timeout
    16: ("rejected", False),   # cleared before answer
    17: ("busy", True),
    18: ("no-answer", True),   # no user responding
    19: ("no-answer", True),   # no answer
    21: ("rejected", False),   # call rejected
    1: ("failed", False),      # unallocated number
    3: ("failed", False),      # no route to destination
    28: ("failed", False),     # invalid number format
}



class CallState(Protocol):
    """What we saw of a call before its channel went."""

    answered: bool
    playback_finished: bool
    playback_failed: bool
    canceled: bool


@dataclass(frozen=True)
class CallEnd:
    outcome: str
    cause_code: int | None
    cause_text: str | None
    detail: str
    retryable: bool


def classify(call: CallState, cause: int | None, cause_text: str | None) -> CallEnd:
    """The outcome of a call whose channel is gone."""
    if call.answered and call.playback_finished and not call.playback_failed:
        # Delivered, even if a cancel arrived after the end: say what happened.
        return CallEnd("completed", cause, cause_text, "answered; the file played to the end",
                       False)
    if call.canceled:
        return CallEnd("canceled", cause, cause_text, "canceled by the client", False)
    if call.answered:
        # The person did not hear it all: worth a retry when retries were asked.
        why = ("Asterisk reported the playback failed" if call.playback_failed
               else "the call ended")
        return CallEnd("failed", cause, cause_text,
                       f"answered, but the file did not play to the end ({why})", True)
    outcome, retryable = CAUSES.get(cause if cause is not None else -1, ("failed", False))
    return CallEnd(outcome, cause, cause_text, f"not answered ({cause_text or 'no cause'})",
                   retryable)
