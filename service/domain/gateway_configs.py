"""What a gateway node's configuration may hold (`amivono gateways add`).
Pure checks; the table's own CHECK constraints say the same."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

NAME_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,32}")
TRUNK_SHAPE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def gateway_problems(name: str, ari_url: str, ari_user: str, ari_password: str,
                     trunk: str | None, calls: int | None,
                     sms_per_second: float | None) -> list[str]:
    """Every reason the configuration is refused (empty: it is fine)."""
    problems = []
    if not NAME_SHAPE.fullmatch(name):
        problems.append(f"name {name!r}: 1 to 32 of A-Z a-z 0-9 . _ -")
    parts = urlsplit(ari_url)
    try:
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        port_ok = False
    if (parts.scheme not in ("http", "https") or not parts.hostname or not port_ok
            or parts.query or parts.fragment or any(c.isspace() for c in ari_url)):
        problems.append(f"--ari-url {ari_url!r}: an http:// or https:// URL such as "
                        "http://10.0.0.5:8088/ari")
    if not ari_user:
        problems.append("--ari-user: must not be empty")
    if not ari_password:
        problems.append("--ari-password: must not be empty")
    if trunk is not None and not TRUNK_SHAPE.fullmatch(trunk):
        problems.append(f"--trunk {trunk!r}: a PJSIP endpoint name (A-Z a-z 0-9 . _ -)")
    if calls is not None and calls < 0:
        problems.append(f"--calls {calls}: 0 or more")
    if sms_per_second is not None and not sms_per_second > 0:
        problems.append(f"--sms-per-second {sms_per_second:g}: more than 0")
    return problems
