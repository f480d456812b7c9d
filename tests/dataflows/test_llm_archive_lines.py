"""Recorded LLM answers in an archive (issue 16 part 4), without servers: the first pass reads them into
the scan's Recordings and leaves them out of the record count and of the order check; the replay's items
never include them; an archive's merge sorts the llm topic's roughly ordered partitions."""

from __future__ import annotations

from datetime import timedelta

import orjson

from dataflows.replay import PartitionMerge, RecordedAnswers
from dataflows.sources import archive_items, load_archive, scan_archive
from operators.recordings import Recordings
from tests.dataflows.records import T0, msg, raw
from worktool.models import LlmRecord


def answer(key: str, seconds: float, status: str = "ok") -> bytes:
    return LlmRecord(
        operation="classify", key=key, at=T0 + timedelta(seconds=seconds), status=status,  # type: ignore[arg-type]
        output='{"message_type": "chat_daily"}' if status == "ok" else None,
    ).to_json()  # fmt: skip


def test_the_first_pass_reads_the_answers_and_the_replay_skips_them(tmp_path) -> None:
    records = [raw("message", "wt_day", float(i), msg(f"消息{i}", "用户")) for i in range(3)]
    # answers written in the order calls came back: not in event time among themselves
    lines = [records[0], records[1], answer("m2", 2.0), answer("m1", 1.0, "fallback"), records[2],
             b'{"kind":"llm_answer","operation":"classify"}']  # fmt: skip
    archive = tmp_path / "a.jsonl"
    archive.write_bytes(b"\n".join(lines) + b"\n")

    scan = scan_archive(archive)
    assert (scan.records, scan.in_order) == (3, True)  # the unreadable answer is skipped, not a record
    assert scan.recordings.count("classify") == 2
    got = scan.recordings.get("classify", "m1")
    assert got is not None and got.status == "fallback"
    items = list(archive_items(archive, timedelta(seconds=60)))
    assert [x for x in items if isinstance(x, bytes)] == records
    assert [line for _, line in load_archive(archive)] == records  # the in-memory sort drops them too


def test_recorded_answers_describe_what_the_replay_does() -> None:
    assert RecordedAnswers.of(Recordings()).describe() == (
        "no recorded LLM answers in this archive: classification by the rules, replies from the templates"
    )
    recordings = Recordings()
    recordings.add_line(answer("m1", 1.0))
    assert RecordedAnswers.of(recordings).describe().startswith("1 recorded LLM answers in this archive")


def test_an_unordered_partition_is_sorted_as_it_is_buffered() -> None:
    raw0, llm0 = ("raw", 0), ("llm", 0)
    merge = PartitionMerge([raw0, llm0], unordered=frozenset({llm0}))
    stamp = "2025-01-01T00:00:0{}.000Z".format
    merge.add(llm0, stamp(3), b"L3")
    merge.add(llm0, stamp(1), b"L1")  # a new head of the partition
    merge.add(llm0, stamp(2), b"L2")
    for i in (1, 2, 3, 4):
        merge.add(raw0, stamp(i), b"R%d" % i)
    merge.end(llm0)
    merge.end(raw0)
    out = [v for _, v in merge.pop(everything=True)]
    assert out == [b"R1", b"L1", b"R2", b"L2", b"R3", b"L3", b"R4"]
    assert merge.done
    assert orjson.loads(answer("k", 1.0))["kind"] == "llm_answer"
