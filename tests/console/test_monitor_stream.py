"""The monitor stream's fan-out without a broker: every client gets every event in order, a client
whose queue is full is dropped (told so) while the others go on, a quiet stream sends keep-alives,
and a disconnected client leaves the hub."""

from __future__ import annotations

import asyncio
from typing import Any

from console.monitor import STREAM_DROPPED, MonitorHub, MonitorOptions, sse_stream


class FakeRequest:
    def __init__(self) -> None:
        self.disconnected = False

    async def is_disconnected(self) -> bool:
        return self.disconnected


def ready_hub(**options: Any) -> MonitorHub:
    hub = MonitorHub("127.0.0.1:1", "worktool.monitor", MonitorOptions(**options))
    hub.ready.set()  # as if the consumer had been assigned (no consumer thread in these tests)
    return hub


def events(n: int, start: int = 0) -> list[bytes]:
    return [b'{"event":"message_classified","n":%d}' % i for i in range(start, start + n)]


def test_a_slow_client_is_dropped_and_the_others_get_everything() -> None:
    async def main() -> None:
        hub = ready_hub(queue_size=5)
        fast, slow = hub.subscribe(), hub.subscribe()
        dropped_before = STREAM_DROPPED._value.get()
        received: list[bytes | None] = []
        for batch in (events(3), events(3, 3), events(3, 6)):
            hub.publish(batch)
            while not fast.queue.empty():  # the fast client reads as it goes; the slow one never does
                received.append(fast.queue.get_nowait())
        assert received == [b"data: " + e + b"\n\n" for e in events(9)]
        assert slow.dropped and slow not in hub.subscribers and fast in hub.subscribers
        assert slow.queue.get_nowait() is None and slow.queue.empty()  # told, nothing stale left
        assert STREAM_DROPPED._value.get() == dropped_before + 1

    asyncio.run(main())


def test_the_stream_says_ready_sends_events_and_keeps_alive_when_quiet() -> None:
    async def main() -> None:
        hub = ready_hub(keepalive_s=0.05)
        request = FakeRequest()
        stream = sse_stream(hub, request)  # type: ignore[arg-type]
        assert await anext(stream) == b"retry: 3000\n\n"
        assert (await anext(stream)).startswith(b"event: ready\ndata: ")
        assert len(hub.subscribers) == 1
        assert await anext(stream) == b": keep-alive\n\n"
        hub.publish(events(2))
        assert [await anext(stream), await anext(stream)] == [b"data: " + e + b"\n\n" for e in events(2)]
        request.disconnected = True
        async for _ in stream:
            raise AssertionError("a disconnected client gets nothing more")
        assert hub.subscribers == set()

    asyncio.run(main())


def test_a_dropped_client_is_told_to_reconnect() -> None:
    async def main() -> None:
        hub = ready_hub(queue_size=1)
        stream = sse_stream(hub, FakeRequest())  # type: ignore[arg-type]
        await anext(stream), await anext(stream)  # retry, ready
        hub.publish(events(2))  # two events for a queue of one
        assert (await anext(stream)).startswith(b"event: dropped\n")
        async for _ in stream:
            raise AssertionError("the stream ends after the drop")

    asyncio.run(main())
