"""The event-time clock of a shard (operators/timers.py), driven directly with explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from operators.timers import ShardClock, Timer

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def drain(clock: ShardClock, until: datetime) -> list[Timer]:
    fired = []
    while (t := clock.next_due(until)) is not None:
        fired.append(t)
    return fired


def test_timers_fire_from_the_watermark_in_due_then_schedule_order() -> None:
    clock = ShardClock()
    clock.schedule(at(30), "s1", "b")
    clock.schedule(at(10), "s2", "a")
    clock.schedule(at(30), "s3", "c")  # same due as "b", scheduled later
    clock.schedule(at(60), "s1", "d")
    assert drain(clock, at(9)) == []
    assert [t.kind for t in drain(clock, at(30))] == ["a", "b", "c"]
    assert [t.due for t in drain(clock, at(1000))] == [at(60)]
    assert clock.pending() == 0


def test_a_watermark_of_none_fires_nothing() -> None:
    clock = ShardClock()
    clock.schedule(at(0), "s1", "a")
    assert clock.next_due(None) is None and clock.pending() == 1


def test_a_keys_record_fires_only_its_own_due_timers() -> None:
    clock = ShardClock()
    clock.schedule(at(10), "s1", "first")
    clock.schedule(at(20), "s2", "other session")
    clock.schedule(at(15), "s1", "second")
    clock.schedule(at(50), "s1", "later")
    fired = []
    while (t := clock.next_due_for("s1", at(20))) is not None:
        fired.append(t.kind)
    assert fired == ["first", "second"]
    assert [t.kind for t in clock.timers_of("s1")] == ["later"]
    assert clock.pending("s2") == 1
    # The heap entries of timers fired by key are skipped when the watermark passes them.
    assert [t.kind for t in drain(clock, at(60))] == ["other session", "later"]


def test_cancel_is_exact_and_a_fired_timer_cannot_be_cancelled() -> None:
    clock = ShardClock()
    a = clock.schedule(at(10), "s1", "a")
    b = clock.schedule(at(20), "s1", "b")
    assert clock.cancel(a) is True
    assert clock.cancel(a) is False  # twice
    assert clock.pending() == 1 and clock.pending("s1") == 1
    assert [t.seq for t in drain(clock, at(30))] == [b]
    assert clock.cancel(b) is False  # already fired
    assert clock.pending() == 0 and clock.pending("s1") == 0


def test_cancel_key_by_kind() -> None:
    clock = ShardClock()
    clock.schedule(at(10), "s1", "expiry")
    clock.schedule(at(20), "s1", "window")
    clock.schedule(at(30), "s1", "expiry")
    clock.schedule(at(30), "s2", "expiry")
    assert clock.cancel_key("s1", "expiry") == 2
    assert [t.kind for t in clock.timers_of("s1")] == ["window"]
    assert clock.cancel_key("s1") == 1 and clock.pending("s1") == 0
    assert clock.pending() == 1


def test_cancelled_timers_do_not_accumulate() -> None:
    """Scheduling and cancelling far-future timers forever keeps memory bounded by live timers."""
    clock = ShardClock()
    for i in range(10_000):
        seq = clock.schedule(at(86_400 + i), f"s{i}", "expiry")
        clock.cancel(seq)
    assert clock.pending() == 0
    assert len(clock._heap) <= 64


def test_the_watermark_never_moves_back_and_marks_late_records() -> None:
    clock = ShardClock()
    assert not clock.is_late(at(0))  # no watermark yet
    assert clock.advance(at(10)) is True
    assert clock.advance(at(5)) is False and clock.watermark == at(10)
    assert clock.is_late(at(9.999)) and not clock.is_late(at(10))


def test_snapshot_is_plain_data_and_resumes_with_timers_pending() -> None:
    clock = ShardClock()
    clock.advance(at(5))
    clock.schedule(at(30), "s1", "b", payload={"alert_id": "a1"})
    cancelled = clock.schedule(at(10), "s2", "gone")
    clock.schedule(at(20), "s2", "a", payload=("m1", 3))
    clock.cancel(cancelled)
    snap = clock.snapshot()

    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list | tuple):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, str | int | float | datetime)

    assert plain(snap)
    resumed = ShardClock.restore(snap)
    assert resumed.watermark == at(5) and resumed.pending() == 2
    # New timers keep counting from the snapshot: no sequence number is reused.
    later = resumed.schedule(at(20), "s3", "c")
    assert later > max(t.seq for t in clock.timers_of("s1") + clock.timers_of("s2"))
    fired = drain(resumed, at(100))
    assert [(t.kind, t.payload) for t in fired] == [("a", ("m1", 3)), ("c", None), ("b", {"alert_id": "a1"})]


def test_an_unknown_snapshot_version_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        ShardClock.restore({"v": 99})
