"""The shard clock's heaps (a shard heap and one per key) against a brute-force model of the rules in
operators/timers.py: on random schedules, cancellations, watermarks, key records and snapshot
round-trips, the same timers fire in the same order and the same ones stay pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.timers import ShardClock, Timer

T0 = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)
KEYS = ["s1", "s2", "s3", "robot:r"]
KINDS = ["a", "b", "c"]


class Model:
    """The rules, by brute force: a list of live timers, earliest (due, seq) first."""

    def __init__(self) -> None:
        self.live: dict[int, Timer] = {}
        self.seq = 0

    def schedule(self, due: datetime, key: str, kind: str, payload: object) -> int:
        self.seq += 1
        self.live[self.seq] = Timer(due, self.seq, key, kind, payload)
        return self.seq

    def cancel(self, seq: int) -> bool:
        return self.live.pop(seq, None) is not None

    def cancel_key(self, key: str, kind: str | None) -> int:
        seqs = [s for s, t in self.live.items() if t.key == key and (kind is None or t.kind == kind)]
        for s in seqs:
            del self.live[s]
        return len(seqs)

    def _first(self, until: datetime, key: str | None) -> Timer | None:
        due = [t for t in self.live.values() if t.due <= until and (key is None or t.key == key)]
        if not due:
            return None
        first = min(due, key=lambda t: (t.due, t.seq))
        del self.live[first.seq]
        return first

    def next_due(self, until: datetime) -> Timer | None:
        return self._first(until, None)

    def next_due_for(self, key: str, until: datetime) -> Timer | None:
        return self._first(until, key)

    def timers_of(self, key: str, kind: str | None) -> list[Timer]:
        mine = [t for t in self.live.values() if t.key == key and (kind is None or t.kind == kind)]
        return sorted(mine, key=lambda t: (t.due, t.seq))


seconds = st.integers(min_value=0, max_value=120)
op = st.one_of(
    st.tuples(st.just("schedule"), seconds, st.sampled_from(KEYS), st.sampled_from(KINDS)),
    st.tuples(st.just("schedule"), seconds, st.sampled_from(KEYS), st.sampled_from(KINDS)),
    st.tuples(st.just("cancel"), st.integers(min_value=-1, max_value=12)),  # one of the latest timers
    st.tuples(st.just("cancel"), st.integers(min_value=-1, max_value=12)),
    st.tuples(st.just("cancel_key"), st.sampled_from(KEYS), st.sampled_from([None, *KINDS])),
    st.tuples(st.just("tick"), seconds),
    st.tuples(st.just("record"), st.sampled_from(KEYS), seconds),
    st.tuples(st.just("restore")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(op, max_size=150))
def test_heaps_fire_like_the_brute_force_rules(ops: list[tuple]) -> None:
    clock, model = ShardClock(), Model()
    for o in ops:
        match o:
            case ("schedule", s, key, kind):
                due = T0 + timedelta(seconds=s)
                assert clock.schedule(due, key, kind, (key, s)) == model.schedule(due, key, kind, (key, s))
            case ("cancel", back):
                seq = model.seq - back
                assert clock.cancel(seq) == model.cancel(seq)
            case ("cancel_key", key, kind):
                assert clock.cancel_key(key, kind) == model.cancel_key(key, kind)
            case ("tick", s):
                until = T0 + timedelta(seconds=s)
                while (fired := clock.next_due(until)) is not None:
                    assert fired == model.next_due(until)
                assert model.next_due(until) is None
            case ("record", key, s):
                until = T0 + timedelta(seconds=s)
                while (fired := clock.next_due_for(key, until)) is not None:
                    assert fired == model.next_due_for(key, until)
                assert model.next_due_for(key, until) is None
            case ("restore",):
                clock = ShardClock.restore(clock.snapshot())
        assert clock.pending() == len(model.live)
        for key in KEYS:
            assert clock.pending(key) == len(model.timers_of(key, None))
            assert clock.timers_of(key) == model.timers_of(key, None)
            assert clock.timers_of(key, "a") == model.timers_of(key, "a")
    # Memory follows the live timers: no heap of a key without live timers, none grown without bound.
    assert set(clock._by_key) == {t.key for t in model.live.values()}
    assert all(len(h) <= max(8, 2 * clock.pending(k)) + 1 for k, h in clock._by_key.items())


def test_a_key_with_many_timers_fires_its_own_in_order_and_keeps_only_live_ones() -> None:
    clock = ShardClock()
    seqs = [clock.schedule(T0 + timedelta(seconds=1000 - i), "busy", "k", i) for i in range(1000)]
    for i, seq in enumerate(seqs):
        if i % 3:  # two of every three, so cancelled entries lie side by side in the heap
            clock.cancel(seq)
    assert clock.pending("busy") == 334 and len(clock._by_key["busy"]) <= 2 * 334
    fired = []
    while (t := clock.next_due_for("busy", T0 + timedelta(seconds=2000))) is not None:
        fired.append(t.payload)
    assert fired == sorted(range(0, 1000, 3), reverse=True)
    assert clock.pending() == 0 and clock.pending("busy") == 0 and "busy" not in clock._by_key
