"""Webhook signing (checked with the reference `standardwebhooks` verifier, not
our own code), the egress guard, the request checks and the retry schedule."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from service.delivery.webhook_sender import resolve_checked
from service.delivery.webhook_worker import SCHEDULE_SECONDS, retry_in
from service.domain import webhook_signing
from service.domain.egress import RefusedUrl, allowed_networks, split_url, why_refused
from service.domain.refusals import Refused
from service.domain.webhook_requests import parse_webhook_request


def test_a_signed_body_verifies_with_the_reference_library():
    secret = webhook_signing.new_secret()
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 32
    body = json.dumps({"type": "sms.sent", "timestamp": "2026-11-27T12:00:00.000Z",
                       "data": {"id": 1, "message": "å ä ö 😀"}}, ensure_ascii=False).encode()
    now = int(time.time())
    headers = webhook_signing.headers(secret, "msg_abc", now, body)
    assert Webhook(secret).verify(body, headers)["data"]["id"] == 1
    with pytest.raises(WebhookVerificationError):  # one byte changed
        Webhook(secret).verify(body.replace(b"1", b"2"), headers)
    with pytest.raises(WebhookVerificationError):  # another endpoint's secret
        Webhook(webhook_signing.new_secret()).verify(body, headers)


def test_secrets_differ():
    assert len({webhook_signing.new_secret() for _ in range(50)}) == 50


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
    "224.0.0.1", "100.64.0.1", "::1", "fe80::1", "fd00::1", "fd00:ec2::254",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "240.0.0.1",
    "fec0::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1"])  # site-local; 6to4 of internal ones
def test_internal_addresses_are_refused(address):
    assert why_refused(ipaddress.ip_address(address), ()) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                     "::ffff:93.184.215.14",  # IPv4-mapped: judged as IPv4
                                     "2002:5db8:d70e::1"])  # 6to4 of a public address
def test_public_addresses_are_allowed(address):
    assert why_refused(ipaddress.ip_address(address), ()) is None


def test_an_allowed_network_lets_its_addresses_through_and_no_others():
    allowed = allowed_networks("127.0.0.0/8, 10.9.0.0/16")
    assert why_refused(ipaddress.ip_address("127.0.0.2"), allowed) is None
    assert why_refused(ipaddress.ip_address("10.9.3.4"), allowed) is None
    assert why_refused(ipaddress.ip_address("10.8.3.4"), allowed) is not None
    # An IPv4-mapped IPv6 address is the IPv4 one, in or out of the allowed networks.
    assert why_refused(ipaddress.ip_address("::ffff:127.0.0.2"), allowed) is None
    assert why_refused(ipaddress.ip_address("::ffff:10.8.3.4"), allowed) is not None


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "http://u:p@host/",
                                 "http://host:99999/", "javascript:alert(1)"])
def test_only_plain_http_urls(url):
    with pytest.raises(RefusedUrl):
        split_url(url)


async def test_a_host_that_cannot_be_a_name_is_refused_not_an_error():
    for url in ("http://a..b/", "http://" + "a" * 64 + ".example/"):
        with pytest.raises(RefusedUrl):
            await resolve_checked(url, ())


def test_url_parts():
    assert split_url("https://hooks.example.com/x") == ("https", "hooks.example.com", 443)
    assert split_url("http://127.0.0.1:8081/h") == ("http", "127.0.0.1", 8081)


def test_request_checks():
    ok = parse_webhook_request({"url": "https://x.example/h", "events": ["sms.sent"] * 2})
    assert ok.events == ["sms.sent"] and ok.enabled is None
    for body, field in (({}, "url"), ({"url": "ftp://x/"}, "url"),
                        ({"url": "https://x/", "events": ["sms.nope"]}, "events"),
                        ({"url": "https://x/", "events": "sms.sent"}, "events"),
                        ({"url": "https://x/", "enabled": False}, "enabled"),
                        ({"url": "https://x/", "description": "x" * 501}, "description")):
        with pytest.raises(Refused) as refused:
            parse_webhook_request(body)
        assert [e.field for e in refused.value.errors] == [field], body
    patch = parse_webhook_request({"enabled": False}, patch=True)
    assert patch.url is None and patch.enabled is False


def test_the_standard_webhooks_schedule_then_giving_up():
    assert SCHEDULE_SECONDS == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert [retry_in(n, 1.0) for n in range(1, 8)] == list(SCHEDULE_SECONDS[1:])
    assert retry_in(8, 1.0) is None
    assert retry_in(2, 0.01) == 3.0
