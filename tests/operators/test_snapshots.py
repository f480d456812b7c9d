"""operators/snapshots.py: keyed state kept as pickled buckets, re-pickled only where a key changed."""

from __future__ import annotations

import pickle
import random

from operators.snapshots import Buckets


def test_the_buckets_hold_the_state_and_only_changed_ones_are_pickled_again() -> None:
    rng = random.Random(3)
    state: dict[str, tuple[int, str]] = {}
    buckets = Buckets(state.get)
    previous: tuple[bytes, ...] = ()
    for round_ in range(30):
        touched = set()
        for _ in range(rng.choice((0, 3, 40, 400))):
            key = f"group:{rng.randrange(3000)}"
            if key in state and rng.random() < 0.3:
                del state[key]
            else:
                state[key] = (round_, key)
            touched.add(key)
        buckets.touch_all(touched)
        snap = buckets.snapshot()
        assert Buckets.load(snap) == state and len(buckets) == len(state)
        if len(snap) == len(previous):  # no resize: the untouched buckets are the very same bytes
            changed = {b for b, (x, y) in enumerate(zip(snap, previous, strict=True)) if x is not y}
            assert len(changed) <= len(touched)
            if not touched:
                assert not changed
        previous = snap
    assert len(previous) >= 128  # grew with the keys: about 8 a bucket


def test_an_earlier_snapshot_stays_as_it_was() -> None:
    state = {f"k{i}": [i] for i in range(100)}
    buckets = Buckets(state.get, state)
    snap = buckets.snapshot()
    frozen = pickle.dumps(snap)
    for i in range(0, 100, 7):
        state[f"k{i}"] = [i, "changed"]
        buckets.touch(f"k{i}")
    del state["k1"]
    buckets.touch("k1")
    later = buckets.snapshot()
    assert pickle.dumps(snap) == frozen and Buckets.load(snap)["k7"] == [7]
    assert Buckets.load(later) == state


def test_resume_keeps_the_bytes_and_rebuilds_a_foreign_layout() -> None:
    state = {f"k{i}": i for i in range(500)}
    snap = Buckets(state.get, state).snapshot()
    resumed, data = Buckets.resume(snap)
    assert data == state
    assert resumed.bind(state.get).snapshot() == snap  # the same bytes: nothing pickled again
    foreign = (pickle.dumps(dict(list(state.items())[:250])), pickle.dumps(dict(list(state.items())[250:])))
    other, data = Buckets.resume(foreign)
    assert data == state
    again = other.bind(state.get).snapshot()
    assert Buckets.load(again) == state and len(again) > 2
