"""Live ticks slow down while nothing arrives (sources.TickPace): every tick interval while records are
delivered, every idle tick interval once none has been for a second; a delivery brings the next tick
forward, and a one-worker flow's consumer waits for records until the next idle tick is due."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dataflows import sources
from dataflows.sources import TICK_QUIET_S, TickPace, TickSource, _SharedConsumer
from operators.timers import Tick

BUSY, IDLE = timedelta(seconds=0.25), timedelta(seconds=2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tick_times(pace: TickPace, clock: Clock, until: float, step: float = 0.01, deliveries=()) -> list[float]:
    """When the tick partition emits, polled every `step` seconds, with records delivered at `deliveries`."""
    part = sources._TickPartition(BUSY, timedelta(seconds=1), active=True, pace=pace)
    pending = sorted(deliveries)
    start, out = clock.now, []
    for i in range(round(until / step)):
        clock.now = start + i * step  # no accumulated rounding
        while pending and pending[0] <= i * step + 1e-9:
            pending.pop(0)
            pace.delivered()
        batch = part.next_batch()
        if batch:
            assert len(batch) == 1 and isinstance(batch[0], Tick)
            out.append(round(i * step, 2))
    return out


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 2) for a, b in zip(times, times[1:], strict=False)]


def test_ticks_are_busy_while_records_arrive_and_idle_after_a_quiet_second() -> None:
    clock = Clock()
    pace = TickPace(BUSY, IDLE, clock=clock)
    # records every 0.1 s for 2 s, then nothing
    times = tick_times(pace, clock, until=10, deliveries=[i / 10 for i in range(20)])
    busy = [t for t in times if t <= 1.9 + TICK_QUIET_S]
    idle = [t for t in times if t > 1.9 + TICK_QUIET_S]
    assert set(gaps(busy)) == {0.25}  # 4 a second while records arrive and for a quiet second after
    assert busy[-1] >= 2.75
    assert set(gaps([busy[-1], *idle])) == {2.0}  # then one every idle interval
    assert len(idle) == 3


def test_a_record_after_a_quiet_spell_brings_the_next_tick_forward() -> None:
    clock = Clock()
    pace = TickPace(BUSY, IDLE, clock=clock)
    times = tick_times(pace, clock, until=6, deliveries=[4.5])
    assert times[:3] == [0.0, 2.0, 4.0]  # idle from the start
    assert times[3] == 4.5  # due at once: more than a busy interval since the last tick
    assert set(gaps(times[3:])) == {0.25}  # busy again for a quiet second


def test_without_an_idle_interval_the_ticks_keep_one_pace() -> None:
    clock = Clock()
    times = tick_times(TickPace(BUSY, clock=clock), clock, until=3)
    assert set(gaps(times)) == {0.25} and len(times) == 12


def test_the_idle_wait_lasts_until_the_next_idle_tick() -> None:
    clock = Clock()
    pace = TickPace(BUSY, IDLE, clock=clock)
    assert pace.idle_wait() is None  # no tick yet
    assert pace.take_tick()
    clock.now += 0.5
    assert pace.idle_wait() == pytest.approx(1.5)  # idle: next tick 2 s after the last one
    pace.delivered()
    assert pace.idle_wait() is None  # busy: the consumer keeps its short wait
    assert pace.until_busy_tick() == 0.0  # and the tick partition is polled again at once
    assert pace.take_tick()
    clock.now += TICK_QUIET_S + 0.1
    assert pace.idle_wait() == pytest.approx(2 - TICK_QUIET_S - 0.1)


def test_the_live_tick_source_paces_its_partition() -> None:
    source = TickSource(BUSY, timedelta(seconds=1), IDLE)
    assert (source.pace.busy, source.pace.idle) == (0.25, 2.0)
    assert source.build("ticks", 0, 1)._pace is source.pace
    assert TickPace(BUSY, timedelta(seconds=0.1)).idle == 0.25  # never faster than busy


class FakeConsumer:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.messages: list[Any] = []

    def consume(self, n: int, timeout: float) -> list[Any]:
        # consume() waits for n records or the timeout: the long wait asks for one
        self.waits.append((n, timeout) if n == 1 else timeout)
        out, self.messages = self.messages[:n], self.messages[n:]
        return out

    def incremental_assign(self, parts: Any) -> None:
        pass


class FakeMessage:
    def topic(self) -> str:
        return "raw"

    def partition(self) -> int:
        return 0

    def error(self) -> None:
        return None


class FakePart:
    key = ("raw", 0)


@pytest.mark.parametrize("wait_for_ticks", [True, False])
def test_a_one_worker_consumer_waits_for_the_idle_tick(monkeypatch, wait_for_ticks: bool) -> None:
    fake = FakeConsumer()
    monkeypatch.setattr(sources.kafka_clients, "consumer", lambda *a, **k: fake)
    clock = Clock()
    pace = TickPace(BUSY, IDLE, clock=clock)
    shared = _SharedConsumer({}, 100, lambda: None, pace, wait_for_ticks)
    part = FakePart()
    shared.assign(part, 0)  # type: ignore[arg-type]
    monkeypatch.setattr(sources, "QUIET_S", -1.0)  # the consumer's own quiet rule: always quiet here
    assert pace.take_tick()
    clock.now += 0.5
    shared.poll(part)  # type: ignore[arg-type]
    assert fake.waits[-1] == ((1, pytest.approx(1.5)) if wait_for_ticks else sources.IDLE_BLOCK_S)
    fake.messages = [FakeMessage()]
    shared.poll(part)  # type: ignore[arg-type]
    assert len(shared.take(part.key)) == 1  # a delivery: the ticks are busy again
    assert pace.interval(clock.now) == 0.25
    shared.poll(part)  # type: ignore[arg-type]
    assert fake.waits[-1] == sources.IDLE_BLOCK_S
