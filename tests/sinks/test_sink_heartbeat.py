"""HeartbeatSink against the real (embedded) Redis: the key the gateway's /healthz reads, with a TTL,
at most one write a second, and an unreachable Redis that never stops the flow."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis

from gateway.health import HEARTBEAT_KEY as KEY_READ_BY_HEALTHZ
from infra.embedded import free_port
from sinks import heartbeat
from sinks.heartbeat import HEARTBEAT_KEY, HEARTBEAT_TTL_S, HeartbeatSink

pytestmark = pytest.mark.integration


class FakeClock:
    """Stands in for the sink's monotonic clock, so the throttle is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(monotonic=lambda: fake.now, time=time.time))
    return fake


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as c:
        c.delete(HEARTBEAT_KEY)
        yield c
        c.delete(HEARTBEAT_KEY)


def test_writes_the_key_healthz_reads_with_a_ttl(redis_url: str, client: redis.Redis) -> None:
    assert HEARTBEAT_KEY == KEY_READ_BY_HEALTHZ
    partition = HeartbeatSink(redis_url).build("heartbeat", 0, 1)
    before = time.time()
    partition.write_batch(["tick"])
    partition.close()

    written = client.get(HEARTBEAT_KEY)
    assert written is not None and before <= float(written) <= time.time()  # a wall-clock stamp
    assert 0 < client.ttl(HEARTBEAT_KEY) <= HEARTBEAT_TTL_S


def test_each_process_of_a_cluster_beats_its_own_key_too(redis_url: str, client: redis.Redis) -> None:
    own = heartbeat.process_heartbeat_key(3)
    client.delete(own, heartbeat.process_heartbeat_key(0))
    partition = HeartbeatSink(redis_url, process_id=3).build("heartbeat", 6, 8)
    partition.write_batch(["tick"])
    partition.close()
    assert client.get(own) is not None and client.exists(HEARTBEAT_KEY)  # its own, and the one /healthz reads
    assert 0 < client.ttl(own) <= HEARTBEAT_TTL_S
    assert not client.exists(heartbeat.process_heartbeat_key(0))
    client.delete(own)


def test_writes_at_most_once_a_second(redis_url: str, client: redis.Redis, clock: FakeClock) -> None:
    partition = HeartbeatSink(redis_url).build("heartbeat", 0, 1)
    partition.write_batch(["tick"])
    assert client.exists(HEARTBEAT_KEY)

    client.delete(HEARTBEAT_KEY)
    clock.advance(0.9)
    partition.write_batch(["tick"])
    assert not client.exists(HEARTBEAT_KEY)  # throttled: no round trip to Redis

    clock.advance(0.2)  # 1.1 s after the last write
    partition.write_batch(["tick"])
    assert client.exists(HEARTBEAT_KEY)
    partition.close()


def test_an_unreachable_redis_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    partition = HeartbeatSink(f"redis://127.0.0.1:{free_port()}/0").build("heartbeat", 0, 1)
    with caplog.at_level(logging.WARNING, logger="sinks.heartbeat"):
        partition.write_batch(["tick"])
    partition.close()
    assert "heartbeat not written" in caplog.text
