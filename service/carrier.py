"""What the carrier simulator's phones received, read from its log."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from .asterisk_sandbox import Instance

_SIP_USER = re.compile(r"sips?:([^@;>]+)@")


def _user(uri: str) -> str:
    match = _SIP_USER.search(uri)
    return match.group(1) if match else uri


def _decode(field: str) -> str:
    return base64.b64decode(field).decode("utf-8", errors="replace")


def received_sms_log(carrier: Instance) -> Path:
    return carrier.dir / "spool" / "sms-received.log"


def received_sms(carrier: Instance) -> list[dict[str, Any]]:
    """Every SMS the carrier received, oldest first."""
    path = received_sms_log(carrier)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split("|")
        if len(parts) != 5:
            continue
        when, sender, recipient, body, message_id = parts
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


def calls_log(carrier: Instance) -> Path:
    return carrier.dir / "spool" / "calls.log"


def received_calls(carrier: Instance) -> list[dict[str, Any]]:
    """Every call the carrier's phones got, oldest first, with what they heard."""
    path = calls_log(carrier)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split("|")
        if len(parts) != 7:
            continue
        when, sender, recipient, answered_at, ended_at, recording, cause = parts
        answered = bool(answered_at)
        out.append({
            "time": when,
            "from": sender,
            "to": recipient,
            "answered": answered,
            "duration": round(float(ended_at) - float(answered_at), 3) if answered else 0.0,
            "recording": str(carrier.runtime.outside(recording)) if recording else None,
            "cause": int(cause) if cause.isdigit() else None,
        })
    return out
