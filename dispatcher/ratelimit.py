"""WorkTool's rate limit (60 requests per minute per source IP), shared by every dispatcher process.

A token bucket in Redis, spent by an atomic Lua script on Redis's clock: the bucket holds `requests`
tokens and each spent token comes back one window (plus a margin) after it was spent. A bucket that
refills at a steady rate instead would let a full bucket plus a window's refill through in one window
(2N-1 requests), which WorkTool counts as over its limit; here no window of the configured length ever
holds more than `requests` grants. The margin covers the jitter between our grant and WorkTool's
arrival time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis

# KEYS[1]: sorted set of the spent tokens (score: when, in µs on Redis's clock).
# ARGV: capacity, window in µs, a unique member. Returns 0 when a token was spent, else µs to wait.
_SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < capacity then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
"""


class RedisRateLimiter:
    def __init__(
        self, client: redis.Redis, key: str, requests: int, window_s: float, margin_s: float = 0.0
    ) -> None:
        self._client = client
        self._key = key
        self._capacity = requests
        self._window_us = int((window_s + margin_s) * 1_000_000)
        self._spend = client.register_script(_SPEND)

    def try_acquire(self) -> float:
        """Spend a token if one is free: 0.0; otherwise the seconds until the next one comes back
        (another process may take it first)."""
        wait_us = int(self._spend(keys=[self._key], args=[self._capacity, self._window_us, uuid.uuid4().hex]))
        return wait_us / 1_000_000

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Block until a token is spent; returns the seconds waited."""
        started = time.monotonic()
        while (wait := self.try_acquire()) > 0:
            sleep(min(wait, 1.0))
        return time.monotonic() - started
