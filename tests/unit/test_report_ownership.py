"""What lets each delivery report be written once: the attempts a dispatcher
sent (SentAttempts, sms_sends.py) and the inbox size the replay may read up
to (AgedSize, inbound_sms.py)."""

from __future__ import annotations

from service.delivery.inbound_sms import AgedSize
from service.delivery.sms_sends import SentAttempts


def test_an_attempt_is_ours_once_until_it_is_forgotten():
    sent = SentAttempts(horizon=10.0, limit=3)
    sent.add(1, now=0.0)
    sent.add(2, now=1.0)
    assert sent.take(1) and not sent.take(1)  # its report comes once
    assert not sent.take(99)  # another dispatcher's
    sent.add(3, now=12.0)  # 2 is older than the horizon: the replay's now
    assert not sent.take(2) and sent.take(3)
    for attempt in (4, 5, 6, 7):
        sent.add(attempt, now=13.0)
    assert not sent.take(4)  # past the limit, the oldest goes
    assert all(sent.take(a) for a in (5, 6, 7))


def test_the_replay_reads_only_what_has_been_in_the_file_for_the_grace():
    aged = AgedSize(grace=2.0)
    assert aged.observe(inode=7, size=100, now=0.0) == 0  # nothing old enough yet
    assert aged.observe(inode=7, size=300, now=1.0) == 0
    assert aged.observe(inode=7, size=500, now=2.0) == 100
    assert aged.observe(inode=7, size=600, now=3.5) == 300
    assert aged.observe(inode=7, size=600, now=9.0) == 600
    # A new file, or this one truncated: its sizes start again.
    assert aged.observe(inode=8, size=50, now=10.0) == 0
    assert aged.observe(inode=8, size=10, now=13.0) == 0
    assert aged.observe(inode=8, size=20, now=15.0) == 10
