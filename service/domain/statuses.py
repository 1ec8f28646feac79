"""Every status, outcome and validation error code the API shows, in one place.

Statuses are computed in SQL (the CASE of `sms_message_view` and
`voice_message_view`) and outcomes are held by CHECK constraints: SQL cannot
import this module, so `tests/unit/test_statuses.py` reads the .sql files and
fails when they and these lists disagree. The OpenAPI document takes its enums
from here.
"""

from __future__ import annotations

from enum import StrEnum


class SmsStatus(StrEnum):
    """What an SMS message is doing (sms_message_view.status)."""

    QUEUED = "queued"        # nothing sent yet, waiting for a dispatcher
    SENDING = "sending"      # a dispatcher holds a send in flight
    SCHEDULED = "scheduled"  # sent at least once, waiting for the next repeat
    COMPLETED = "completed"  # every repeat was sent
    CLICKED = "clicked"      # the tracked link was opened: no more repeats
    CANCELED = "canceled"    # DELETE stopped the sends still to come
    REPLIED = "replied"      # the phone answered: no more repeats
    OPTED_OUT = "opted_out"  # the phone said STOP to the account: no more sends
    FAILED = "failed"        # too many consecutive failed attempts


# Statuses in which sends are still to come (the response's `repeat` counts them).
SMS_ACTIVE = (SmsStatus.QUEUED, SmsStatus.SENDING, SmsStatus.SCHEDULED)


class SmsAttemptOutcome(StrEnum):
    """How one SMS send attempt ended (sms_attempts.outcome; null while in flight)."""

    SENT = "sent"        # handed to the trunk (or modem)
    FAILED = "failed"    # the transport refused or errored: not sent
    UNKNOWN = "unknown"  # the lease ran out mid-send: it may have gone out


class SmsDeliveryOutcome(StrEnum):
    """What the carrier's report (or its absence) made of a sent attempt; shown
    as the attempt's outcome over `sent` (the attempt row itself stays final)."""

    DELIVERED = "delivered"      # stat:DELIVRD
    UNDELIVERED = "undelivered"  # any other stat; the send is retried
    EXPIRED = "expired"          # no report within AMIVONO_DLR_TIMEOUT


class InboundKind(StrEnum):
    """What an inbound SMS is (inbound_messages.kind)."""

    REPLY = "reply"  # anything else: ends repeats from that number to the phone
    STOP = "stop"    # opts the phone out of the account's SMS
    START = "start"  # opts it back in
    HELP = "help"    # asks for the help text


class VoiceOutcome(StrEnum):
    """How a voice message ended (voice_messages.outcome), and its attempts' outcomes."""

    COMPLETED = "completed"  # answered and the file played to the end
    BUSY = "busy"            # Q.850 17
    NO_ANSWER = "no-answer"  # Q.850 18, 19, or 0 while ringing
    REJECTED = "rejected"    # Q.850 16 before answer, or 21
    FAILED = "failed"        # any other end, including answered but cut short
    CANCELED = "canceled"    # DELETE before it completed


class VoiceStatus(StrEnum):
    """What a voice message is doing (voice_message_view.status): these, then its outcome."""

    QUEUED = "queued"        # no call placed yet
    CALLING = "calling"      # a dispatcher holds a call in progress
    SCHEDULED = "scheduled"  # an attempt ended, a retry is due later
    COMPLETED = VoiceOutcome.COMPLETED.value
    BUSY = VoiceOutcome.BUSY.value
    NO_ANSWER = VoiceOutcome.NO_ANSWER.value
    REJECTED = VoiceOutcome.REJECTED.value
    FAILED = VoiceOutcome.FAILED.value
    CANCELED = VoiceOutcome.CANCELED.value


class VoiceAttemptOutcome(StrEnum):
    """How one call attempt ended (voice_attempts.outcome; null while in progress)."""

    COMPLETED = VoiceOutcome.COMPLETED.value
    BUSY = VoiceOutcome.BUSY.value
    NO_ANSWER = VoiceOutcome.NO_ANSWER.value
    REJECTED = VoiceOutcome.REJECTED.value
    FAILED = VoiceOutcome.FAILED.value
    CANCELED = VoiceOutcome.CANCELED.value
    UNKNOWN = "unknown"  # the lease ran out mid-call: it may have been placed


class FieldCode(StrEnum):
    """The `code` of a field in a 422 Validation Failed answer."""

    MISSING_FIELD = "missing_field"  # required and absent (or null)
    INVALID = "invalid"              # wrong type or form
    TOO_LONG = "too_long"            # the SMS text does not fit one segment
    OUT_OF_RANGE = "out_of_range"    # an integer outside its bounds
    UNKNOWN_FIELD = "unknown_field"  # a field the resource does not take
    NOT_OWNED = "not_owned"          # `from` is not one of the account's numbers
    OPTED_OUT = "opted_out"          # `to` sent STOP to the account


def values(enum: type[StrEnum]) -> list[str]:
    """The plain strings, in declaration order (for JSON Schema enums)."""
    return [member.value for member in enum]
