"""How a voice call ended (service/domain/call_causes.py `classify`): what we
saw of the call first, then the Q.850 cause of an unanswered one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from service.domain.call_causes import CallEnd, classify


@dataclass
class Call:
    answered: bool = False
    playback_finished: bool = False
    playback_failed: bool = False
    canceled: bool = False


NOT_ANSWERED = Call()


@pytest.mark.parametrize(
    ("cause", "outcome", "retryable"),
    [
        (17, "busy", True),
        (18, "no-answer", True),
        (19, "no-answer", True),
        (0, "no-answer", True),
        (21, "rejected", False),
        (16, "rejected", False),
        (1, "failed", False),
        (3, "failed", False),
        (28, "failed", False),
    ],
)
def test_unanswered_by_q850_cause(cause: int, outcome: str, retryable: bool) -> None:
    end = classify(NOT_ANSWERED, cause, "some text")
    assert (end.outcome, end.retryable) == (outcome, retryable)
    assert (end.cause_code, end.cause_text) == (cause, "some text")
    assert end.detail == "not answered (some text)"


@pytest.mark.parametrize("cause", [None, 2, 31, 34, 38, 127, 999, -1])
def test_unknown_or_missing_cause_is_failed_not_retried(cause: int | None) -> None:
    end = classify(NOT_ANSWERED, cause, None)
    assert (end.outcome, end.retryable, end.cause_code) == ("failed", False, cause)
    assert end.detail == "not answered (no cause)"


@pytest.mark.parametrize("cause", [16, 17, 21, None])
def test_answered_and_played_to_the_end_is_completed(cause: int | None) -> None:
    end = classify(Call(answered=True, playback_finished=True), cause, "Normal Clearing")
    assert end == CallEnd("completed", cause, "Normal Clearing",
                          "answered; the file played to the end", False)


def test_completed_wins_over_a_late_cancel() -> None:
    call = Call(answered=True, playback_finished=True, canceled=True)
    assert classify(call, 16, None).outcome == "completed"


@pytest.mark.parametrize(
    "call",
    [
        Call(canceled=True),
        Call(canceled=True, answered=True),
        Call(canceled=True, answered=True, playback_finished=True, playback_failed=True),
    ],
)
def test_canceled_before_delivery(call: Call) -> None:
    end = classify(call, 17, "User busy")  # the cause does not matter then
    assert (end.outcome, end.retryable) == ("canceled", False)


def test_answered_but_hung_up_early_is_failed_and_retryable() -> None:
    end = classify(Call(answered=True), 16, "Normal Clearing")
    assert (end.outcome, end.retryable, end.cause_code) == ("failed", True, 16)
    assert "did not play to the end" in end.detail and "the call ended" in end.detail


def test_answered_but_playback_failed_is_failed_and_retryable() -> None:
    end = classify(Call(answered=True, playback_finished=True, playback_failed=True), 16, None)
    assert (end.outcome, end.retryable) == ("failed", True)
    assert "playback failed" in end.detail
