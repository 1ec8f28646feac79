"""Failed authentications per client address: a token bucket per address.

A guesser gets `burst` wrong keys at once, then `per_minute`; past that it is
answered 429 before any database query. Keys this process has seen succeed
pass a throttled address, so a guesser behind the same NAT as a real client
does not lock that client out; so do keys active in the database when the
caller last loaded them (`claim_active_load`, `know_active`: at most every `REFRESH_SECONDS`, so a
key made a moment ago passes too, and a flood of guesses costs one query per
interval, not one each). Memory is bounded: past `max_addresses` the
longest-quiet address is forgotten (it has had the longest to refill).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

KNOWN_KEYS = 10_000
REFRESH_SECONDS = 5.0


class AuthThrottle:
    def __init__(self, burst: int, per_minute: float, max_addresses: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.rate = per_minute / 60.0  # tokens per second
        self.max_addresses = max_addresses
        self.clock = clock
        # address -> (tokens, when counted); most recently failed last.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._known: OrderedDict[bytes, None] = OrderedDict()
        self._active: frozenset[bytes] = frozenset()
        self._active_at = float("-inf")

    def _tokens(self, address: str, now: float) -> float:
        tokens, then = self._buckets.get(address, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def retry_after(self, address: str, key_hash: bytes | None) -> int | None:
        """Seconds to wait before another try from `address`, or None if it may
        try now (always for a key known good)."""
        if key_hash is not None and (key_hash in self._known or key_hash in self._active):
            return None
        if address not in self._buckets:
            return None
        tokens = self._tokens(address, self.clock())
        if tokens >= 1.0:
            return None
        return max(1, int((1.0 - tokens) / self.rate + 0.999)) if self.rate > 0 else 3600

    def failed(self, address: str) -> None:
        now = self.clock()
        tokens = self._tokens(address, now)
        self._buckets[address] = (max(0.0, tokens - 1.0), now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self.max_addresses:
            self._buckets.popitem(last=False)

    def claim_active_load(self, key_hash: bytes | None) -> bool:
        """Whether this caller is to load the active keys before refusing this
        key. The load is claimed here, before it is awaited, and stays claimed
        if it fails: throttled requests arriving together, or during a
        database outage, cost one query per REFRESH_SECONDS, not one each."""
        now = self.clock()
        if key_hash is None or now - self._active_at < REFRESH_SECONDS:
            return False
        self._active_at = now
        return True

    def know_active(self, key_hashes: frozenset[bytes]) -> None:
        self._active = key_hashes

    def succeeded(self, key_hash: bytes) -> None:
        self._known[key_hash] = None
        self._known.move_to_end(key_hash)
        while len(self._known) > KNOWN_KEYS:
            self._known.popitem(last=False)
