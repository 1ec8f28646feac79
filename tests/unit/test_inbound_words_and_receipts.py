"""What an inbound SMS asks for, and the carrier's delivery receipts."""

from __future__ import annotations

import pytest

from service.delivery.inbound_sms import header, sip_user
from service.domain.delivery_receipts import NotAReceipt, parse_receipt
from service.domain.inbound_words import kind_of, word_list
from service.domain.statuses import InboundKind


@pytest.mark.parametrize("text", ["STOP", " stop ", "Stop\n", "STOPALL", "unsubscribe",
                                  "cancel", "END", "quit", "OptOut", "REVOKE"])
def test_stop_words(text):
    assert kind_of(text) == InboundKind.STOP


@pytest.mark.parametrize("text", ["stop it", "please stop", "STOPP", "", "S T O P", "st0p"])
def test_only_the_whole_message_counts(text):
    assert kind_of(text) == InboundKind.REPLY


def test_more_stop_words_by_setting():
    extra = word_list(" stopp, Sluta ,")
    assert extra == ("STOPP", "SLUTA")
    assert kind_of("stopp", extra) == kind_of("Sluta", extra) == InboundKind.STOP
    assert kind_of("stopp") == InboundKind.REPLY


@pytest.mark.parametrize("text, kind", [("START", InboundKind.START), ("unstop", InboundKind.START),
                                        ("yes", InboundKind.START), ("HELP", InboundKind.HELP),
                                        ("info ", InboundKind.HELP), ("ok", InboundKind.REPLY)])
def test_start_and_help(text, kind):
    assert kind_of(text) == kind


def test_a_receipt_is_read():
    r = parse_receipt("id:1234 sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 "
                      "stat:DELIVRD err:000 text:stat:UNDELIV id:9 in the text")
    assert (r.ref, r.stat, r.error, r.delivered) == (1234, "DELIVRD", "000", True)
    bad = parse_receipt("id:7 sub:001 dlvrd:000 submit date:x done date:x stat:UNDELIV err:001 "
                        "text:")
    assert (bad.ref, bad.delivered, bad.error) == (7, False, "001")


@pytest.mark.parametrize("body", ["hello", "id:abc stat:DELIVRD", "id:12 sub:001",
                                  "id:" + "9" * 30 + " stat:DELIVRD", "id:١٢ stat:DELIVRD"])
def test_what_is_not_a_receipt(body):
    with pytest.raises(NotAReceipt):
        parse_receipt(body)


def test_sip_users_and_headers():
    assert sip_user("<sip:+46736265449@127.0.0.1>") == "+46736265449"
    assert sip_user('"Anna" <sip:+46736265449@host:5060>;tag=x') == "+46736265449"
    assert sip_user("pjsip:+46812345678@127.0.0.1") == "+46812345678"
    assert header({"Call-ID": "abc", "CSeq": "2 MESSAGE"}, "call-id") == "abc"
    assert header({}, "cseq") is None
