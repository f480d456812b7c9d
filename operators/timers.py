"""Event-time clock and timers of one shard. Pure: no wall clock is read here.

Why a clock of our own: bytewax's `notify_at` compares with the wall clock, so a replay of last month
would fire every timer at once; and its watermarks are per key, so an idle key would never see time
pass. Instead the dataflow keeps its state in a fixed set of shards and broadcasts `Tick`s to all of
them. A tick carries the *watermark* W: the event time up to which the flow has (normally) seen every
record.

- Live, W = wall time - allowed lateness (a few seconds), sent every tick interval.
- In a replay, W = the latest record time read so far - the same lateness, sent before each record that
  moves it past a tick boundary (dataflows/sources.py).

Timers belong to a key (a session, a robot, a command) and fire in (due, sequence) order:

- from the watermark: a tick fires every timer with due <= W, whatever its key;
- from the key's own records: before a record of key K stamped t is applied, K's timers with due <= t
  fire. A key's records reach the flow in time order (one Kafka partition per conversation), so this
  gives the same result live and in a replay, and a record can never fire *another* key's timer (whose
  cancelling record may still be on its way).

A fired timer carries its due time, which becomes the event time of what it decides: live and replay
emit the same events with the same times, for any batch size, tick spacing or worker count.

A record stamped before W is *late* (`is_late`): it is still applied; timers it schedules that are
already due fire at the next tick, stamped with their due time. So live equals replay whenever no record
is later than the allowed lateness.

Two heaps of (due, seq): one for the whole shard (the watermark's) and one per key (its records'), so
finding what is due costs O(log n) whatever the number of timers a shard or a key holds. Cancelled
timers are dropped from the index at once (`pending()` is exact); their heap entries are skipped when
they surface and compacted when they outnumber the live ones, so memory stays bounded by the live
timers.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Tick:
    """Event-time progress broadcast to every shard: the watermark."""

    at: datetime


class Timer(NamedTuple):
    """A pending timer. A named tuple: one is built for every timer scheduled, at a quarter of a frozen
    dataclass's cost."""

    due: datetime
    seq: int  # schedule order: ties on `due` fire in the order they were scheduled
    key: str  # whose timer: a session id, a robot id, ...
    kind: str  # what it is for, e.g. "staff_window_end"
    payload: Any = None  # plain data only (it is part of the snapshot)


class ShardClock:
    """The watermark of one shard and its pending timers."""

    __slots__ = ("watermark", "_heap", "_timers", "_by_key", "_live", "_seq", "touched")

    def __init__(self) -> None:
        self.watermark: datetime | None = None
        self._heap: list[tuple[datetime, int]] = []  # every key's timers, cancelled ones included
        self._timers: dict[int, Timer] = {}  # live timers by seq
        self._by_key: dict[str, list[tuple[datetime, int]]] = {}  # a heap per key, cancelled included
        self._live: dict[str, int] = {}  # live timers per key
        self._seq = 0
        self.touched: set[str] | None = None  # keys whose timers changed, when tracked (`track()`)

    # -- time ------------------------------------------------------------------------------------

    def advance(self, watermark: datetime) -> bool:
        """Move the watermark forward (never back). True if it moved."""
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
            return True
        return False

    def is_late(self, at: datetime) -> bool:
        """A record stamped before the watermark arrived later than the allowed lateness."""
        return self.watermark is not None and at < self.watermark

    # -- timers ----------------------------------------------------------------------------------

    def schedule(self, due: datetime, key: str, kind: str, payload: Any = None) -> int:
        self._seq = seq = self._seq + 1
        self._timers[seq] = Timer(due, seq, key, kind, payload)
        entry = (due, seq)
        heapq.heappush(self._heap, entry)
        heap = self._by_key.get(key)
        if heap is None:
            self._by_key[key] = [entry]
            self._live[key] = 1
        else:
            heapq.heappush(heap, entry)
            self._live[key] += 1
        if self.touched is not None:
            self.touched.add(key)
        return seq

    def cancel(self, seq: int) -> bool:
        """Forget a pending timer; False if it already fired or was cancelled."""
        timer = self._timers.pop(seq, None)
        if timer is None:
            return False
        self._unindex(timer.key)
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._timers):
            self._heap = [(t.due, t.seq) for t in self._timers.values()]
            heapq.heapify(self._heap)
        return True

    def cancel_key(self, key: str, kind: str | None = None) -> int:
        """Cancel the key's timers (of one kind, or all); returns how many."""
        seqs = [t.seq for t in self._live_of(key) if kind is None or t.kind == kind]
        for seq in seqs:
            self.cancel(seq)
        return len(seqs)

    def timers_of(self, key: str, kind: str | None = None) -> list[Timer]:
        """The key's pending timers in firing order."""
        timers = (t for t in self._live_of(key) if kind is None or t.kind == kind)
        return sorted(timers, key=lambda t: (t.due, t.seq))

    def pending(self, key: str | None = None) -> int:
        return len(self._timers) if key is None else self._live.get(key, 0)

    def next_due(self, until: datetime | None) -> Timer | None:
        """Remove and return the earliest pending timer due at or before `until` (None: none)."""
        if until is None:
            return None
        heap, timers = self._heap, self._timers
        while heap and heap[0][0] <= until:
            _, seq = heapq.heappop(heap)
            timer = timers.pop(seq, None)
            if timer is not None:  # else: cancelled earlier, or fired by its key
                self._unindex(timer.key)
                return timer
        return None

    def next_due_for(self, key: str, until: datetime) -> Timer | None:
        """Remove and return the key's earliest pending timer due at or before `until`."""
        heap = self._by_key.get(key)
        if heap is None:
            return None
        timers = self._timers
        while heap[0][1] not in timers:  # cancelled, or fired by the watermark (the key has a live one)
            heapq.heappop(heap)
        due, seq = heap[0]
        if due > until:
            return None
        heapq.heappop(heap)
        timer = timers.pop(seq)
        self._unindex(key)  # its entry in the shard's heap is skipped when it surfaces
        return timer

    def _live_of(self, key: str) -> list[Timer]:
        timers = self._timers
        return [timers[seq] for _, seq in self._by_key.get(key, ()) if seq in timers]

    def _unindex(self, key: str) -> None:
        """One of the key's timers left (fired or cancelled): count it, compact or drop its heap."""
        if self.touched is not None:
            self.touched.add(key)
        live = self._live[key] - 1
        if live == 0:
            del self._live[key], self._by_key[key]
            return
        self._live[key] = live
        heap = self._by_key[key]
        if len(heap) > 8 and len(heap) > 2 * live:
            timers = self._timers
            heap[:] = [e for e in heap if e[1] in timers]
            heapq.heapify(heap)

    # -- snapshot --------------------------------------------------------------------------------

    def track(self) -> set[str]:
        """Record from now on the keys whose timers change (scheduled, cancelled, fired), for a snapshot
        by key (operators/snapshots.py); the set starts with every key holding a timer and is drained by
        the caller."""
        if self.touched is None:
            self.touched = set(self._live)
        return self.touched

    @property
    def last_seq(self) -> int:
        return self._seq

    def key_timers(self, key: str) -> list[tuple[datetime, int, str, Any]] | None:
        """One key's live timers as plain (due, seq, kind, payload) in seq order; None: it has none."""
        timers = sorted(self._live_of(key), key=lambda t: t.seq)
        return [(t.due, t.seq, t.kind, t.payload) for t in timers] or None

    def snapshot(self) -> dict[str, Any]:
        """Plain data: the watermark, the sequence counter and the live timers."""
        return {
            "v": SNAPSHOT_VERSION,
            "watermark": self.watermark,
            "seq": self._seq,
            "timers": [(t.due, t.seq, t.key, t.kind, t.payload) for t in self._timers.values()],
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ShardClock:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown clock snapshot version {data.get('v')!r}")
        clock = cls()
        clock.watermark = data["watermark"]
        clock._seq = data["seq"]
        for due, seq, key, kind, payload in data["timers"]:
            timer = Timer(due, seq, key, kind, payload)
            clock._timers[seq] = timer
            clock._by_key.setdefault(key, []).append((due, seq))
            clock._live[key] = clock._live.get(key, 0) + 1
            clock._heap.append((due, seq))
        heapq.heapify(clock._heap)
        for heap in clock._by_key.values():
            heapq.heapify(heap)
        return clock
