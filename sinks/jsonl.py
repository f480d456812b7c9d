"""JSONL file sink: one model per line (replay output, test capture)."""

from __future__ import annotations

from typing import IO, Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _JsonlPartition(StatelessSinkPartition[Any]):
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write_batch(self, items: list[Any]) -> None:
        self._stream.write(b"".join(item.to_json() + b"\n" for item in items))

    def close(self) -> None:
        self._stream.flush()


class JsonlSink(DynamicSink[Any]):
    """Writes `item.to_json()` lines to a binary stream. Single worker only (one shared stream)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlPartition:
        return _JsonlPartition(self.stream)
