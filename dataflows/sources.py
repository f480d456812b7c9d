"""Bytewax sources of the flow: live ticks and JSONL archives (with data-derived ticks)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

from operators.timers import Tick
from worktool.models import to_utc

# ------------------------------------------------------------------------------------ live ticks


class _TickPartition(StatelessSourcePartition[Tick]):
    def __init__(self, interval: timedelta, lag: timedelta, active: bool) -> None:
        self._interval = interval
        self._lag = lag
        self._active = active
        self._next = datetime.now(UTC)

    def next_batch(self) -> list[Tick]:
        if not self._active:
            return []
        now = datetime.now(UTC)
        if now < self._next:
            return []
        self._next = now + self._interval
        return [Tick(now - self._lag)]

    def next_awake(self) -> datetime | None:
        # Idle workers sleep for long stretches instead of polling.
        return self._next if self._active else datetime.now(UTC) + timedelta(hours=1)


class TickSource(DynamicSource[Tick]):
    """Wall-clock ticks, emitted by worker 0 only (the flow broadcasts each tick to every shard)."""

    def __init__(self, interval: timedelta, lag: timedelta) -> None:
        self.interval = interval
        self.lag = lag

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _TickPartition:
        return _TickPartition(self.interval, self.lag, active=worker_index == 0)


# ------------------------------------------------------------------------------------ archives


def _stamp(line: bytes) -> datetime | None:
    try:
        record = orjson.loads(line)
        return to_utc(record.get("received_at") or record["at"])  # a raw record, or a control record
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def load_archive(path: Path) -> list[tuple[datetime | None, bytes]]:
    """Archive lines in event-time order (stable sort). A line without a readable stamp keeps its
    place after the previous line, so it still reaches the DLQ in order."""
    rows: list[tuple[datetime | None, bytes]] = []
    with path.open("rb") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append((_stamp(line), line))
    last = datetime.min.replace(tzinfo=UTC)
    keyed = []
    for i, (ts, line) in enumerate(rows):
        last = ts if ts is not None and ts > last else last
        keyed.append((ts or last, i, ts, line))
    keyed.sort(key=lambda r: (r[0], r[1]))
    return [(ts, line) for _, _, ts, line in keyed]


def with_data_ticks(
    rows: list[tuple[datetime | None, bytes]],
    interval: timedelta,
    lateness: timedelta = timedelta(0),
    until: datetime | None = None,
) -> list[bytes | Tick]:
    """Interleave the replay's watermark: before a record stamped t, a Tick at (t - lateness) rounded
    down to the tick interval, when that is past the last tick (so at most one tick per interval).
    With `until`, a last Tick(until) after the archive fires everything due by then."""
    out: list[bytes | Tick] = []
    step = interval.total_seconds()
    last_tick: datetime | None = None
    for ts, line in rows:
        if ts is not None:
            mark = (ts - lateness).timestamp()
            boundary = datetime.fromtimestamp((mark // step) * step, UTC)
            if last_tick is None or boundary > last_tick:
                out.append(Tick(boundary))
                last_tick = boundary
        out.append(line)
    if until is not None and (last_tick is None or until > last_tick):
        out.append(Tick(until))
    return out


class _ListPartition(StatefulSourcePartition[bytes | Tick, int]):
    def __init__(
        self,
        items: list[bytes | Tick],
        resume: int | None,
        batch_size: int,
        on_progress: Callable[[int], None] | None,
    ) -> None:
        self._items = items
        self._i = resume or 0
        self._batch = batch_size
        self._on_progress = on_progress

    def next_batch(self) -> list[bytes | Tick]:
        if self._i >= len(self._items):
            raise StopIteration
        batch = self._items[self._i : self._i + self._batch]
        self._i += len(batch)
        if self._on_progress:
            self._on_progress(sum(1 for x in batch if not isinstance(x, Tick)))
        return batch

    def snapshot(self) -> int:
        return self._i


class ArchiveSource(FixedPartitionedSource[bytes | Tick, int]):
    """A JSONL archive of raw records, replayed in event time with data-derived ticks."""

    def __init__(
        self,
        path: Path,
        tick_interval: timedelta,
        batch_size: int = 1000,
        on_progress: Callable[[int], None] | None = None,
        lateness: timedelta = timedelta(0),
        until: datetime | None = None,
    ) -> None:
        self.rows = load_archive(path)
        self.items = with_data_ticks(self.rows, tick_interval, lateness, until)
        self.batch_size = batch_size
        self.on_progress = on_progress

    @property
    def record_count(self) -> int:
        return len(self.rows)

    def list_parts(self) -> list[str]:
        return ["archive"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _ListPartition:
        return _ListPartition(self.items, resume_state, self.batch_size, self.on_progress)
