"""Failed authentications per client address (service/domain/auth_throttle.py),
on a fake clock."""

from __future__ import annotations

from service.domain.auth_throttle import AuthThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_429_then_the_refill_rate() -> None:
    clock = Clock()
    throttle = AuthThrottle(burst=5, per_minute=30, clock=clock)  # one every 2 s
    for _ in range(5):
        assert throttle.retry_after("10.0.0.1", None) is None
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", None) == 2
    clock.now += 1.0
    assert throttle.retry_after("10.0.0.1", None) == 1
    clock.now += 1.0
    assert throttle.retry_after("10.0.0.1", None) is None  # one token back
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", None) == 2
    # A quiet minute refills the whole burst, no more.
    clock.now += 60.0
    for _ in range(5):
        assert throttle.retry_after("10.0.0.1", None) is None
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", None) is not None


def test_addresses_are_apart_and_known_keys_pass() -> None:
    clock = Clock()
    throttle = AuthThrottle(burst=2, per_minute=1, clock=clock)
    throttle.succeeded(b"good")
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", None) == 60
    assert throttle.retry_after("10.0.0.1", b"other") == 60
    assert throttle.retry_after("10.0.0.1", b"good") is None
    assert throttle.retry_after("10.0.0.2", None) is None


def test_memory_is_bounded() -> None:
    clock = Clock()
    throttle = AuthThrottle(burst=1, per_minute=1, max_addresses=3, clock=clock)
    for n in range(10):
        throttle.failed(f"10.0.0.{n}")
    assert len(throttle._buckets) == 3
    # The longest-quiet addresses were forgotten; the newest still wait.
    assert throttle.retry_after("10.0.0.0", None) is None
    assert throttle.retry_after("10.0.0.9", None) == 60


def test_active_keys_pass_and_are_loaded_at_most_every_five_seconds() -> None:
    clock = Clock()
    throttle = AuthThrottle(burst=1, per_minute=1, clock=clock)
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", b"new") == 60
    assert not throttle.claim_active_load(None)  # no key: nothing to look up
    assert throttle.claim_active_load(b"new")
    throttle.know_active(frozenset({b"new"}))
    assert throttle.retry_after("10.0.0.1", b"new") is None
    assert throttle.retry_after("10.0.0.1", b"guess") == 60
    clock.now += 4.9
    assert not throttle.claim_active_load(b"guess")
    clock.now += 0.1
    assert throttle.claim_active_load(b"guess")


def test_one_load_per_interval_even_while_it_is_awaited_or_after_it_failed() -> None:
    clock = Clock()
    throttle = AuthThrottle(burst=1, per_minute=1, clock=clock)
    throttle.failed("10.0.0.1")
    # Many throttled requests at once: the first claims the load, the others
    # (arriving while it is awaited, know_active not yet called) do not.
    assert throttle.claim_active_load(b"guess1")
    assert [throttle.claim_active_load(b"guess%d" % n) for n in range(2, 50)] == [False] * 48
    # That load failed (the database is away): know_active is never called, and
    # the guesses that follow are refused without a query until the interval ends.
    clock.now += 4.9
    assert not throttle.claim_active_load(b"guess")
    assert throttle.retry_after("10.0.0.1", b"guess") is not None
    clock.now += 0.1
    assert throttle.claim_active_load(b"guess")
    assert not throttle.claim_active_load(b"guess")
