"""Event-time clock and timers for one shard.

Bytewax's `notify_at` is wall-clock only (shared/domain/bytewax-notes.md §1.4), so timers live in
operator state and fire when the shard's event-time clock passes their due time. The clock advances
with record stamps and with ticks (wall-clock ticks live, data-derived ticks in replay). A fired timer
carries its due time, which becomes the event time of whatever it decides: live and replay agree.
Ordering is (due, sequence number), both part of the state, so firing order is deterministic.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Tick:
    """Event-time progress broadcast to every shard."""

    at: datetime


@dataclass(order=True)
class Timer:
    due: datetime
    seq: int
    kind: str = field(compare=False)
    key: str = field(compare=False)
    payload: Any = field(compare=False, default=None)


@dataclass
class ShardClock:
    now: datetime | None = None
    _heap: list[Timer] = field(default_factory=list)
    _seq: int = 0
    _cancelled: set[int] = field(default_factory=set)

    def advance(self, at: datetime) -> bool:
        """Move the clock forward (never back). Returns True if it moved."""
        if self.now is None or at > self.now:
            self.now = at
            return True
        return False

    def schedule(self, due: datetime, kind: str, key: str, payload: Any = None) -> int:
        self._seq += 1
        heapq.heappush(self._heap, Timer(due, self._seq, kind, key, payload))
        return self._seq

    def cancel(self, timer_id: int) -> None:
        self._cancelled.add(timer_id)

    def pop_due(self) -> list[Timer]:
        """Timers due at or before the clock, in (due, seq) order."""
        fired: list[Timer] = []
        while self._heap and self.now is not None and self._heap[0].due <= self.now:
            t = heapq.heappop(self._heap)
            if t.seq in self._cancelled:
                self._cancelled.discard(t.seq)
                continue
            fired.append(t)
        return fired

    def pending(self) -> int:
        return len(self._heap) - len(self._cancelled)
