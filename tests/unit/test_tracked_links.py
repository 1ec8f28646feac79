"""Tracked links (service/domain/tracked_links.py): the token's shape, and which
requests are a person opening the link rather than a preview or prefetch."""

from __future__ import annotations

import pytest

from service.domain import sms_text
from service.domain.tracked_links import (
    TOKEN_ALPHABET,
    TOKEN_LENGTH,
    TOKEN_SHAPE,
    is_preview,
    link_for,
    new_token,
)

BROWSERS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "curl/8.5.0",
]

PREVIEW_BOTS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "meta-externalagent/1.1",
    "WhatsApp/2.23.20.0 A",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "TelegramBot (like TwitterBot)",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (Macintosh) AppleWebKit/605.1.15 (KHTML, like Gecko) Applebot/0.1",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/124.0.0.0",
    "Viber/21.0",
    "Mozilla/5.0 (compatible; SomeCrawler/1.0)",
]


def test_token_shape() -> None:
    assert TOKEN_LENGTH == 11
    assert TOKEN_ALPHABET == (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    for _ in range(50):
        token = new_token()
        assert len(token) == TOKEN_LENGTH
        assert TOKEN_SHAPE.fullmatch(token)
        # In GSM-7, one septet a character: the cost link_cost() assumes.
        assert sms_text.measure(token) == sms_text.Encoded(sms_text.GSM7, TOKEN_LENGTH)


def test_tokens_use_the_whole_alphabet_and_do_not_repeat() -> None:
    tokens = [new_token() for _ in range(1000)]
    assert len(set(tokens)) == len(tokens)
    # 11,000 characters over 62 symbols: each appears ~177 times, so a missing
    # one means the draw is broken, not unlucky.
    assert set("".join(tokens)) == set(TOKEN_ALPHABET)
    # Every position varies (no fixed padding from a short draw).
    for i in range(TOKEN_LENGTH):
        assert len({t[i] for t in tokens}) > 40, i


@pytest.mark.parametrize("text", ["", "a" * 10, "a" * 12, "abc/defghij", "abcdefghij\n",
                                  "abcdéfghijk", "abcdefghij٣", "abcdefghij-"])
def test_token_shape_refuses_other_text(text: str) -> None:
    assert not TOKEN_SHAPE.fullmatch(text)


def test_link_for() -> None:
    assert link_for("https://x.example/l", "abcdefghijk") == "https://x.example/l/abcdefghijk"
    assert link_for("https://x.example/l/", "abcdefghijk") == "https://x.example/l/abcdefghijk"


@pytest.mark.parametrize("agent", BROWSERS)
def test_a_person_opening_the_link_is_not_a_preview(agent: str) -> None:
    assert not is_preview("GET", {"user-agent": agent})
    assert not is_preview("GET", {"user-agent": agent, "accept": "text/html"})


@pytest.mark.parametrize("method", ["HEAD", "POST", "OPTIONS", "get"])
def test_anything_but_get_is_a_preview(method: str) -> None:
    assert is_preview(method, {"user-agent": BROWSERS[0]})


@pytest.mark.parametrize("headers", [{}, {"user-agent": ""}])
def test_no_user_agent_is_a_preview(headers: dict[str, str]) -> None:
    assert is_preview("GET", headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"purpose": "prefetch"},
        {"purpose": "Prefetch"},
        {"sec-purpose": "prefetch"},
        {"sec-purpose": "prefetch;prerender"},
        {"sec-purpose": "prefetch; anonymous-client-ip"},
        {"purpose": "preview"},
    ],
)
def test_prefetch_is_a_preview(headers: dict[str, str]) -> None:
    assert is_preview("GET", {"user-agent": BROWSERS[0], **headers})


@pytest.mark.parametrize("agent", PREVIEW_BOTS)
def test_known_preview_bots(agent: str) -> None:
    assert is_preview("GET", {"user-agent": agent})
    assert is_preview("GET", {"user-agent": agent.upper()})  # case does not matter
