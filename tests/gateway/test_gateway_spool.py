"""The gateway's durable spool: pure file logic, no broker."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from gateway import spool as spool_module
from gateway.spool import (
    Spool,
    SpoolEntry,
    SpoolWriter,
    claim_slot,
    decode_entry,
    encode_entry,
    orphan_slots,
    read_records,
)


def _line(i: int) -> bytes:
    return encode_entry(SpoolEntry("worktool.raw", f"group:g{i}", orjson.dumps({"i": i, "text": "你好\n"})))


def test_entry_round_trips_byte_for_byte() -> None:
    value = orjson.dumps({"kind": "message", "body": {"spoken": "第一行\n第二行", "atMe": "false", "n": 1.5}})
    line = encode_entry(SpoolEntry("worktool.raw", "group:A群", value))
    assert b"\n" not in line
    assert decode_entry(line) == SpoolEntry("worktool.raw", "group:A群", value)
    assert decode_entry(encode_entry(SpoolEntry("worktool.dlq", None, b"{}"))).key is None


def test_append_is_fsynced_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(spool_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    spool = Spool(tmp_path)
    spool.append([_line(1), _line(2)])
    assert synced, "append returned without fsync"
    # What is on disk right after append is everything: another reader sees both lines.
    (segment,) = spool.sealed_segments() or [next(tmp_path.glob("*.jsonl"))]
    assert read_records(segment) == [_line(1), _line(2)]
    assert spool.depth == 2


def test_torn_last_line_is_ignored_and_never_appended_to(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_line(1), _line(2)])
    spool.close()
    (segment,) = tmp_path.glob("*.jsonl")
    with segment.open("ab") as f:  # a crash in the middle of writing record 3
        f.write(_line(3)[:17])

    reopened = Spool(tmp_path)
    assert reopened.depth == 2
    reopened.append([_line(4)])
    segments = sorted(tmp_path.glob("*.jsonl"))
    assert len(segments) == 2, "a restarted spool must start a new segment"
    assert read_records(segments[0]) == [_line(1), _line(2)]
    assert read_records(segments[1]) == [_line(4)]
    assert reopened.depth == 3


def test_segments_rotate_by_size_and_drain_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=300)
    lines = [_line(i) for i in range(20)]
    for line in lines:
        spool.append([line])
    spool.seal()
    segments = spool.sealed_segments()
    assert len(segments) > 3
    assert [p.name for p in segments] == sorted(p.name for p in segments)
    drained = [line for p in segments for line in read_records(p)]
    assert drained == lines
    for p in segments:
        spool.remove(p)
    assert spool.depth == 0 and not list(tmp_path.glob("*.jsonl"))


def test_active_segment_cannot_be_removed_until_sealed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append([_line(1)])
    assert spool.sealed_segments() == []
    (active,) = tmp_path.glob("*.jsonl")
    with pytest.raises(ValueError):
        spool.remove(active)
    spool.seal()
    assert spool.sealed_segments() == [active]
    spool.append([_line(2)])  # goes to a new segment
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_failed_write_closes_the_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)
    spool.append([_line(1)])

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool_module.os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        spool.append([_line(2)])
    monkeypatch.undo()
    spool.append([_line(3)])
    assert len(list(tmp_path.glob("*.jsonl"))) == 2  # never appended after a possibly torn write


def test_group_commit_shares_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    spool = Spool(tmp_path)
    real_append = spool.append

    def counting_append(lines: list[bytes]) -> None:
        calls.append(len(lines))
        real_append(lines)

    monkeypatch.setattr(spool, "append", counting_append)

    async def main() -> None:
        writer = SpoolWriter(spool)
        await asyncio.gather(*(writer.append(_line(i)) for i in range(200)))
        assert not writer.busy

    asyncio.run(main())
    assert sum(calls) == 200
    assert len(calls) < 20, calls
    spool.seal()
    drained = [line for p in spool.sealed_segments() for line in read_records(p)]
    assert drained == [_line(i) for i in range(200)]  # in the order append was called


def test_group_commit_reports_write_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool = Spool(tmp_path)

    def broken(lines: list[bytes]) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(spool, "append", broken)

    async def main() -> None:
        writer = SpoolWriter(spool)
        results = await asyncio.gather(
            writer.append(_line(1)), writer.append(_line(2)), return_exceptions=True
        )
        assert all(isinstance(r, OSError) for r in results)
        assert not writer.busy

    asyncio.run(main())


def test_slots_are_exclusive_and_orphans_are_found(tmp_path: Path) -> None:
    first = claim_slot(tmp_path)
    second = claim_slot(tmp_path)
    assert first.directory != second.directory
    Spool(second.directory).append([_line(1)])
    # While its owner lives, a slot is nobody's orphan.
    assert orphan_slots(tmp_path, first.directory) == []
    second.release()
    (orphan,) = orphan_slots(tmp_path, first.directory)
    assert orphan.directory == second.directory
    third = claim_slot(tmp_path)
    assert third.directory not in (first.directory, second.directory)
    for lock in (orphan, first, third):
        lock.release()
