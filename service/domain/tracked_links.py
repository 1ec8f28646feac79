"""The tracked link in a repeated SMS: opening it stops the repeats.

Each message has its own token of 11 base-62 characters (65 random bits),
written in GSM-7 so it costs one septet a character. Link-preview fetchers
(chat apps and social sites unfurling the URL) and prefetches are not the
person, so they never count as a click.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_LENGTH = 11
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9]{11}", re.ASCII)

# User agents of link unfurlers and crawlers, matched case-insensitively.
_PREVIEW_AGENTS = re.compile(
    r"facebookexternalhit|facebot|meta-externalagent|whatsapp|slackbot|slack-imgproxy"
    r"|telegrambot|twitterbot|linkedinbot|discordbot|skypeuripreview|microsoftpreview"
    r"|microsoft teams|googlebot|google-pagerenderer|adsbot|bingbot|bingpreview|applebot"
    r"|pinterest|redditbot|embedly|iframely|vkshare|viber|snapchat|mastodon|bluesky"
    r"|crawler|spider|preview|headlesschrome",
    re.IGNORECASE,
)


def new_token() -> str:
    n = secrets.randbelow(len(TOKEN_ALPHABET) ** TOKEN_LENGTH)  # one draw, not eleven
    digits = []
    for _ in range(TOKEN_LENGTH):
        n, d = divmod(n, len(TOKEN_ALPHABET))
        digits.append(TOKEN_ALPHABET[d])
    return "".join(digits)


def link_for(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/{token}"


def is_preview(method: str, headers: Mapping[str, str]) -> bool:
    """True when the request is not a person opening the link (`headers` by
    lower-case name)."""
    if method != "GET":
        return True
    purpose = headers.get("sec-purpose", "") + headers.get("purpose", "")
    if "prefetch" in purpose.lower() or "preview" in purpose.lower():
        return True
    agent = headers.get("user-agent", "")
    return not agent or bool(_PREVIEW_AGENTS.search(agent))
