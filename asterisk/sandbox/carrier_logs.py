"""What the carrier simulator's phones received and reported, read from its logs."""

from __future__ import annotations

import base64
import re
from typing import Any

from sandbox.instances import Instance

_SIP_USER = re.compile(r"sips?:([^@;>]+)@")
_RECEIPT_STAT = re.compile(r"\bstat:(\S+)")


def _user(uri: str) -> str:
    match = _SIP_USER.search(uri)
    return match.group(1) if match else uri


def _decode(field: str) -> str:
    return base64.b64decode(field).decode("utf-8", errors="replace")


def _records(carrier: Instance, log: str, fields: int,
             older: int | None = None) -> list[list[str]]:
    """The lines of one of the carrier's spool logs (dialplan/carrier.conf
    writes them), split into their `|`-separated fields; partial lines skipped.
    Lines of an `older` format (fewer fields) are padded with empty ones."""
    path = carrier.dir / "spool" / log
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split("|")
        if older is not None and len(parts) == older:
            parts += [""] * (fields - older)
        if len(parts) == fields:
            out.append(parts)
    return out


def received_sms(carrier: Instance) -> list[dict[str, Any]]:
    """Every SMS the carrier received, oldest first."""
    out = []
    for when, sender, recipient, body, message_id in _records(carrier, "sms-received.log", 5):
        out.append(
            {
                "time": when,
                "from": _user(_decode(sender)),
                "to": _user(_decode(recipient)),
                "body": _decode(body),
                "message_id": _decode(message_id) or None,
            }
        )
    return out


def received_calls(carrier: Instance) -> list[dict[str, Any]]:
    """Every call the carrier's phones got, oldest first, with what they heard
    and the keys they pressed."""
    out = []
    for when, sender, recipient, answered_at, ended_at, recording, cause, keys in _records(
            carrier, "calls.log", 8, older=7):
        answered = bool(answered_at)
        out.append({
            "time": when,
            "from": sender,
            "to": recipient,
            "answered": answered,
            "duration": round(float(ended_at) - float(answered_at), 3) if answered else 0.0,
            "recording": str(carrier.runtime.outside(recording)) if recording else None,
            "cause": int(cause) if cause.isdigit() else None,
            "keys": keys,
        })
    return out


def sent_reports(carrier: Instance) -> list[dict[str, Any]]:
    """Every delivery report the carrier sent back to the gateway, oldest first:
    from the phone that got the SMS to its sender, `ref` the gateway's
    X-Amivono-Ref, `stat` the receipt's status, `sent` MessageSend's outcome
    (handed to the trunk or not; the gateway's answer is not known here)."""
    out = []
    for when, sender, recipient, ref, body, status in _records(carrier, "reports-sent.log", 6):
        text = _decode(body)
        stat = _RECEIPT_STAT.search(text)
        out.append({
            "time": when,
            "from": sender,
            "to": recipient,
            "ref": _decode(ref),
            "stat": stat.group(1) if stat else None,
            "body": text,
            "sent": status == "SUCCESS",
        })
    return out
