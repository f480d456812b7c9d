"""JSONL file sinks: one model per line (replay output, test capture), or one line per item by a given
encoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition


class _JsonlPartition(StatelessSinkPartition[Any]):
    def __init__(self, stream: IO[bytes], encode: Callable[[Any], bytes] | None = None) -> None:
        self._stream = stream
        self._encode = encode

    def write_batch(self, items: list[Any]) -> None:
        encode = self._encode  # None: the replay's output, each event's kept bytes
        lines = [item.to_json() for item in items] if encode is None else [encode(item) for item in items]
        lines.append(b"")  # every line ends with a newline, without copying each line to add it
        self._stream.write(b"\n".join(lines))

    def close(self) -> None:
        self._stream.flush()


class JsonlSink(DynamicSink[Any]):
    """Writes `item.to_json()` lines to a binary stream. Single worker only (one shared stream)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlPartition:
        return _JsonlPartition(self.stream)


class LineSink(DynamicSink[Any]):
    """Writes `encode(item)` lines (no newline inside) to a binary stream. Single worker only."""

    def __init__(self, stream: IO[bytes], encode: Callable[[Any], bytes]) -> None:
        self.stream = stream
        self.encode = encode

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlPartition:
        return _JsonlPartition(self.stream, self.encode)
