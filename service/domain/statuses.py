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
    ACKNOWLEDGED = "acknowledged"  # its escalation call was acknowledged: no more sends


# Statuses in which sends are still to come (the response's `repeat` counts them).
SMS_ACTIVE = (SmsStatus.QUEUED, SmsStatus.SENDING, SmsStatus.SCHEDULED)


class SmsAttemptOutcome(StrEnum):
    """How one SMS send attempt ended (sms_attempts.outcome; null while in flight)."""

    SENT = "sent"        # handed to the trunk (or modem)
    FAILED = "failed"    # the transport refused or errored: not sent
    UNKNOWN = "unknown"  # lease ran out or gateway node went mid-send: it may have gone out


class SmsDeliveryOutcome(StrEnum):
    """What the carrier's report (or its absence) made of a sent attempt; shown
    as the attempt's outcome over `sent` (the attempt row itself stays final)."""

    DELIVERED = "delivered"      # stat:DELIVRD
    UNDELIVERED = "undelivered"  # any other stat; the send is retried
    EXPIRED = "expired"          # no report within AMIVONO_DLR_TIMEOUT


class WebhookEvent(StrEnum):
    """The events a webhook endpoint can take (emitted by the triggers of
    migrations/005_webhooks.sql; `webhook.test` by POST /webhooks/<id>/test)."""

    SMS_SENT = "sms.sent"                # an attempt was handed to the trunk
    SMS_DELIVERED = "sms.delivered"      # the carrier reported a send delivered
    SMS_UNDELIVERED = "sms.undelivered"  # the carrier reported a send undelivered
    SMS_FAILED = "sms.failed"            # too many failed attempts: no more sends
    SMS_CLICKED = "sms.clicked"          # the tracked link was opened
    SMS_REPLIED = "sms.replied"          # the phone answered: repeats ended
    SMS_OPTED_OUT = "sms.opted_out"      # the phone sent STOP: sends ended
    SMS_COMPLETED = "sms.completed"      # every send was made
    SMS_CANCELED = "sms.canceled"        # DELETE stopped what was to come
    VOICE_ANSWERED = "voice.answered"    # a call was answered
    VOICE_COMPLETED = "voice.completed"  # the file played to the end
    VOICE_FAILED = "voice.failed"        # ended busy, no-answer, rejected or failed
    VOICE_CANCELED = "voice.canceled"    # DELETE stopped it
    VOICE_ACKNOWLEDGED = "voice.acknowledged"  # the callee pressed 1: no more calls
    INBOUND_RECEIVED = "inbound.received"  # an SMS came to one of the account's numbers
    OPTOUT_CHANGED = "optout.changed"    # a phone opted out (STOP) or back in (START)
    WEBHOOK_TEST = "webhook.test"        # POST /webhooks/<id>/test


class WebhookDeliveryStatus(StrEnum):
    """Where one event's delivery to one endpoint stands (webhook_deliveries.status)."""

    PENDING = "pending"      # not delivered yet; next_attempt_at says when it is tried
    SUCCEEDED = "succeeded"  # the endpoint answered 2xx
    FAILED = "failed"        # every attempt of the schedule failed


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
    ACKNOWLEDGED = "acknowledged"  # the callee pressed 1 (acknowledge: true)


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
    ACKNOWLEDGED = VoiceOutcome.ACKNOWLEDGED.value


class VoiceAttemptOutcome(StrEnum):
    """How one call attempt ended (voice_attempts.outcome; null while in progress)."""

    COMPLETED = VoiceOutcome.COMPLETED.value
    BUSY = VoiceOutcome.BUSY.value
    NO_ANSWER = VoiceOutcome.NO_ANSWER.value
    REJECTED = VoiceOutcome.REJECTED.value
    FAILED = VoiceOutcome.FAILED.value
    CANCELED = VoiceOutcome.CANCELED.value
    ACKNOWLEDGED = VoiceOutcome.ACKNOWLEDGED.value
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
    DESTINATION_NOT_ALLOWED = "destination_not_allowed"  # `to`'s type or country is refused
    DESTINATION_CAP = "destination_cap"  # `to` had its messages for this hour (429)


def values(enum: type[StrEnum]) -> list[str]:
    """The plain strings, in declaration order (for JSON Schema enums)."""
    return [member.value for member in enum]
