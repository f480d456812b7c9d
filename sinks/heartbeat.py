"""Liveness heartbeat: the dataflow proves it is processing by refreshing a Redis key that the gateway's
/healthz reads. Throttled to one write a second."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from sinks.retry import WAIT_LISTENERS

HEARTBEAT_KEY = "worktool:dataflow:heartbeat"
OFFSET_RESET_KEY = "worktool:dataflow:offset_reset"  # read by the gateway's /healthz as a notice
HEARTBEAT_TTL_S = 15


def process_heartbeat_key(process_id: int) -> str:
    """The heartbeat of one process of a dataflow cluster (`worktool up` checks each; /healthz reads
    HEARTBEAT_KEY, which every process refreshes too)."""
    return f"{HEARTBEAT_KEY}:{process_id}"


# Set while a sink waits out an outage (sinks/retry.py): the worker is blocked on purpose, so the stale
# heartbeat is not a stall and `worktool up` must not restart the dataflow for it.
SINK_WAITING_KEY = "worktool:dataflow:sink_waiting"
SINK_WAITING_TTL_S = 60  # longer than the longest pause between two attempts (Backoff.max_s)

log = logging.getLogger(__name__)


class _HeartbeatPartition(StatelessSinkPartition[Any]):
    def __init__(self, url: str, process_id: int = 0) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self._own_key = process_heartbeat_key(process_id)
        self._last = 0.0
        WAIT_LISTENERS.append(self._sink_waiting)

    def _sink_waiting(self, sink: str) -> None:
        try:
            self._client.set(SINK_WAITING_KEY, sink, ex=SINK_WAITING_TTL_S)
        except redis.RedisError as e:
            log.warning("sink-waiting notice not written: %s", e)

    def write_batch(self, items: list[Any]) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            return
        self._last = now
        try:
            now_s = str(time.time())
            pipe = self._client.pipeline(transaction=False)  # one round trip
            pipe.set(HEARTBEAT_KEY, now_s, ex=HEARTBEAT_TTL_S)
            pipe.set(self._own_key, now_s, ex=HEARTBEAT_TTL_S)
            pipe.execute()
        except redis.RedisError as e:  # health reporting must never stop the flow
            log.warning("heartbeat not written: %s", e)

    def close(self) -> None:
        if self._sink_waiting in WAIT_LISTENERS:
            WAIT_LISTENERS.remove(self._sink_waiting)
        self._client.close()


class HeartbeatSink(DynamicSink[Any]):
    def __init__(self, url: str, process_id: int = 0) -> None:
        self.url = url
        self.process_id = process_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HeartbeatPartition:
        return _HeartbeatPartition(self.url, self.process_id)
