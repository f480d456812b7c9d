"""Which consumer offsets may be committed: a partition's position moves only past records that are
finished (their outcome recorded, or skipped), so records still waiting for their due time or for the
rate limiter are read again after a crash."""

from __future__ import annotations

from collections.abc import Iterable

Partition = tuple[str, int]  # (topic, partition)


class OffsetTracker:
    def __init__(self) -> None:
        self._open: dict[Partition, set[int]] = {}
        self._next: dict[Partition, int] = {}  # one past the highest offset read
        self._committed: dict[Partition, int] = {}

    def read(self, partition: Partition, offset: int) -> None:
        self._open.setdefault(partition, set()).add(offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def finished(self, partition: Partition, offset: int) -> None:
        self._open.get(partition, set()).discard(offset)

    def committable(self) -> dict[Partition, int]:
        """Partition → the offset to commit (the next record to read after a restart), for the
        partitions whose position moved since the last commit."""
        out = {}
        for partition, next_offset in self._next.items():
            still_open = self._open.get(partition)
            position = min(still_open) if still_open else next_offset
            if position > self._committed.get(partition, -1):
                out[partition] = position
        return out

    def committed(self, positions: dict[Partition, int]) -> None:
        self._committed.update(positions)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """The partitions were taken away (rebalance): whoever gets them starts from their commit."""
        for partition in partitions:
            self._open.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)
