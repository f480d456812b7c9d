"""The shared limiter on the real (embedded) Redis: never more than N grants in any window, shared by
every limiter on the same key."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import redis

from dispatcher.claims import ClaimStore
from dispatcher.ratelimit import RedisRateLimiter

pytestmark = pytest.mark.integration


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_full_bucket_says_how_long_to_wait(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), f"test:rate:{uuid.uuid4().hex}", 3, 60.0)
    assert [limiter.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire()
    assert 59.0 < wait <= 60.0


def test_limiters_on_one_key_share_the_bucket_and_no_window_holds_more(redis_url: str) -> None:
    key = f"test:rate:{uuid.uuid4().hex}"
    limit, window = 5, 0.5
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        # The margin covers the jitter between Redis's grant and this process seeing it.
        limiter = RedisRateLimiter(redis.Redis.from_url(redis_url), key, limit, window, margin_s=0.1)
        for _ in range(5):
            limiter.acquire()
            with lock:
                grants.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(grants) == 20
    assert max_in_window(grants, window) <= limit


def test_claims_move_from_sending_to_answered_to_done(redis_url: str) -> None:
    claims = ClaimStore(redis.Redis.from_url(redis_url), ttl_s=60)
    a, b = f"cmd-{uuid.uuid4().hex}", f"cmd-{uuid.uuid4().hex}"
    assert {c: s.state for c, s in claims.claim([a]).items()} == {a: "new"}
    assert {c: s.state for c, s in claims.claim([a, b]).items()} == {a: "sending", b: "new"}
    claims.answered([a, b], b'{"messageId": "1"}')
    answered = claims.claim([a])[a]
    assert answered.state == "answered" and claims.answer_body(answered) == b'{"messageId": "1"}'
    claims.done([a])
    assert claims.claim([a])[a].state == "done"
