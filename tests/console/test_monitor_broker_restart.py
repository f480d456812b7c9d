"""The console's live stream after a broker restart (issue 13, #2): the embedded broker comes back
empty and the monitor topic is created again; the hub's consumer must follow the new topic (from its
beginning) instead of waiting, silently, at its old position for the new topic to grow past it."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import orjson
import pytest

from console.monitor import MonitorHub, MonitorOptions
from infra.embedded import EmbeddedKafka, free_port
from infra.kafka_admin import ensure_topics
from tests.support import chaos_scale, produce

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
TOPIC = "worktool.monitor"


def event(n: int) -> bytes:
    return orjson.dumps({"event": "message_classified", "n": n})


async def receive(sub, count: int, timeout_s: float) -> list[int]:
    got: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(got) < count:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            frame = await asyncio.wait_for(sub.queue.get(), remaining)
        except TimeoutError:
            break
        assert frame is not None, "the client was dropped"
        got.append(orjson.loads(frame[len(b"data: ") :])["n"])
    return got


def test_the_stream_delivers_again_after_the_broker_restarted_empty(tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", port=free_port()).start()

    async def main() -> None:
        ensure_topics(broker.url, {TOPIC: 3})
        hub = MonitorHub(broker.url, TOPIC, MonitorOptions(topic_check_s=0.5))
        hub.start()
        try:
            await asyncio.wait_for(hub.ready.wait(), 60)
            sub = hub.subscribe()
            before = 30 * chaos_scale()
            await asyncio.to_thread(produce, broker.url, TOPIC, [(f"k{i}", event(i)) for i in range(before)])
            assert sorted(await receive(sub, before, 30)) == list(range(before))

            os.kill(broker.pid, signal.SIGKILL)
            await asyncio.sleep(1)
            broker.stop()
            broker.start()
            await asyncio.to_thread(ensure_topics, broker.url, {TOPIC: 3})
            after = [(f"k{i}", event(1000 + i)) for i in range(5)]  # fewer than the old positions
            await asyncio.to_thread(produce, broker.url, TOPIC, after)
            got = await receive(sub, len(after), 60)
            assert sorted(got) == [1000 + i for i in range(len(after))]
            assert not hub.error
        finally:
            await hub.stop()

    try:
        asyncio.run(main())
    finally:
        broker.stop()
