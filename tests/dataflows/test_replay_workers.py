"""Replays of history at scale: compressed archives read as streams, `--workers N` (independent replays,
one per slice of the shards) giving exactly the events of one worker, and clear errors for a damaged
compressed archive."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import sys
from collections import defaultdict
from contextlib import ExitStack
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

from benchmarks.make_sample_day import big_day
from dataflows.flow import _route_input, parse_all
from dataflows.replay import (
    PartitionMerge,
    ReplayError,
    SliceDesk,
    _run_slices,
    desk_inputs_path,
    replay_archive,
)
from dataflows.sources import ArchiveSlice, archive_items, conversation_of, scan_archive
from infra.archive_io import ArchiveError, iter_lines, open_writer
from operators.gaps import SeqMark
from operators.timers import Tick
from tests.support import REPO
from worktool.events import AlertRaised, EscalationStep, StaffStatus, TaskReminder, parse_event, trusted_event
from worktool.models import DlqRecord, to_utc
from worktool.settings import Settings

SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"
CONFIG_PATH = REPO / "config" / "business.example.yaml"
UNTIL = to_utc("2025-03-13T12:00:00+08:00")  # the day after: every timer of the day is due
SHARDS = 16


def settings() -> Settings:
    return Settings(config_path=CONFIG_PATH, llm_provider=None)


def write_archive(path: Path, lines: list[bytes]) -> Path:
    with open_writer(path) as f:
        f.writelines(line + b"\n" for line in lines)
    return path


@pytest.fixture(scope="module")
def day_lines() -> list[bytes]:
    """A small big day: the sample day and copies of it in groups of their own, stamped by a gateway
    with holes (so the loss detector reports gaps)."""
    return [orjson.dumps(rec) for rec in big_day(1500, missing_every=500)]


@pytest.fixture(scope="module")
def day(tmp_path_factory, day_lines) -> Path:
    return write_archive(tmp_path_factory.mktemp("day") / "day.jsonl", day_lines)


def replay(path: Path, workers: int = 1) -> list[bytes]:
    out = io.BytesIO()
    records, rejected = replay_archive(path, out, settings=settings(), until=UNTIL, workers=workers)
    assert records > 0 and not rejected
    return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def one_worker(day) -> list[bytes]:
    return replay(day)


def by_conversation(lines: list[bytes]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for line in lines:
        e = orjson.loads(line)
        out[e["session_id"] or e["robot_id"] or e["event"]].append(line)
    return out


def test_the_test_day_exercises_sessions_rules_and_loss_detection(one_worker) -> None:
    kinds = {orjson.loads(line)["event"] for line in one_worker}
    for name in (
        "message_classified",
        "session_state",
        "alert_raised",
        "staff_window_closed",
        "pipeline_gap",
    ):
        assert name in kinds, name
    assert len(by_conversation(one_worker)) > 40


def test_compressed_archives_replay_like_the_plain_one(tmp_path, day, day_lines, one_worker) -> None:
    for name in ("day.jsonl.zst", "day.jsonl.gz"):
        archive = write_archive(tmp_path / name, day_lines)
        assert archive.stat().st_size < day.stat().st_size / 4  # really compressed
        assert list(iter_lines(archive)) == day_lines, name  # what a replay reads
    assert replay(tmp_path / "day.jsonl.zst") == one_worker


def test_two_workers_write_the_same_events_as_one(tmp_path, day, one_worker) -> None:
    """The command line, as a user runs it: `worktool replay --workers 2` of a compressed day."""
    archive = tmp_path / "day.jsonl.zst"
    write_archive(archive, list(iter_lines(day)))
    out = tmp_path / "events.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "commands.cli", "replay", str(archive), "--out", str(out), "--workers", "2"]
        + ["--until", UNTIL.isoformat(), "--no-progress"],
        cwd=REPO,
        env={**settings().as_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "2 workers" in r.stderr and "records/s" in r.stderr
    two = out.read_bytes().splitlines()
    assert sorted(two) == sorted(one_worker)  # the same events (none lost, none doubled)
    assert by_conversation(two) == by_conversation(one_worker)  # in the same order per conversation


def test_the_desk_fed_while_the_slices_write_decides_as_the_desk_fed_at_the_end(tmp_path, day) -> None:
    """The parent's desk reads the slices' desk inputs as they grow (whole lines, any chunking, the
    slices interleaved): the same events as reading them once they are complete; a file that ends
    inside a line is an error, not a silently shorter replay."""
    outs = [tmp_path / f"events-{i}.jsonl" for i in range(2)]
    _run_slices(day, outs, settings(), scan_archive(day), None, UNTIL)
    desk_at_end = SliceDesk(outs, settings())
    at_end = io.BytesIO()
    desk_at_end.finish(at_end)
    assert b'"task_created"' in b"".join(desk_inputs_path(p).read_bytes() for p in outs)
    assert at_end.getvalue().count(b"\n") > 10  # the day's tasks get assigned and reported

    rng = random.Random(7)
    growing = [tmp_path / f"growing-{i}.jsonl" for i in range(2)]
    contents = [desk_inputs_path(p).read_bytes() for p in outs]
    desk = SliceDesk(growing, settings())
    desk.feed()  # before any slice has started: nothing to read
    written = [0, 0]
    with ExitStack() as stack:
        files = [stack.enter_context(desk_inputs_path(g).open("wb")) for g in growing]
        while written != [len(c) for c in contents]:
            i = rng.randrange(2)
            n = min(len(contents[i]) - written[i], rng.randrange(1, 20_000))
            files[i].write(contents[i][written[i] : written[i] + n])
            files[i].flush()
            written[i] += n
            desk.feed()
    fed_while_growing = io.BytesIO()
    desk.finish(fed_while_growing)
    assert fed_while_growing.getvalue() == at_end.getvalue()

    desk_inputs_path(growing[1]).write_bytes(contents[1][:-5])  # a slice that stopped mid-line
    with pytest.raises(ReplayError, match="ends inside a line"):
        SliceDesk(growing, settings()).finish(io.BytesIO())


def test_each_slice_takes_whole_conversations_and_every_tick(day) -> None:
    """What makes the workers' results equal: a record goes to the slice of the shard the flow gives it,
    every slice gets every tick at the same place, slice 0 every other slice's gateway stamp."""
    route = _route_input(SHARDS)
    slices = [ArchiveSlice(i, 3, SHARDS, marks=i == 0) for i in range(3)]
    whole = list(archive_items(day, timedelta(seconds=60)))
    ticks = [x for x in whole if isinstance(x, Tick)]
    parts = [list(archive_items(day, timedelta(seconds=60), part=p)) for p in slices]
    for p, items in zip(slices, parts, strict=True):
        assert [x for x in items if isinstance(x, Tick)] == ticks
        for x in items:
            if isinstance(x, bytes):
                for tag, keyed in route([x]):
                    for shard, items in keyed if tag == "shards" else ():
                        for item in items:  # a rejected record passes any shard untouched
                            if not isinstance(item, DlqRecord):
                                assert int(shard) % 3 == p.index
    lines = [x for x in whole if isinstance(x, bytes)]
    assert sorted(x for items in parts for x in items if isinstance(x, bytes)) == sorted(lines)
    # slice 0's gaps step sees every stamp, in archive order, exactly as the whole flow reads them
    flow_marks = [m for line in lines for m in parse_all(line) if isinstance(m, SeqMark)]
    own = {x for x in parts[0] if isinstance(x, bytes)}
    slice_marks = [
        m
        for x in parts[0]
        for m in (parse_all(x) if isinstance(x, bytes) else [x] if isinstance(x, SeqMark) else [])
        if isinstance(m, SeqMark)
    ]
    assert slice_marks == flow_marks and len(own) < len(lines)


def test_routes_found_by_the_first_pass_give_each_slice_the_same_items(tmp_path, day_lines) -> None:
    """`scan_archive(slicing=...)` finds where each record goes once; a slice given those routes skips the
    others' records without reading them and yields exactly what it yields reading every record: the
    same lines, ticks and gateway stamps (odd lines too: string room types, no stamp, not JSON, a
    control record, a stamp with voided numbers)."""
    at = orjson.loads(day_lines[600])["received_at"]  # odd lines at the same time keep the order
    plus = at.replace("Z", "+00:00")
    odd = [
        b'{"kind":"message","robot_id":"wt_9","received_at":"%s","body":' % at.encode()
        + b'{"receivedName":"\\u7532","groupName":"G","roomType":"1"},"seq":{"gw":"g2","n":7,"void":[5,6]}}',
        b'{"kind":"message","robot_id":"wt_9","received_at":"%s","body":' % plus.encode()
        + b'{"receivedName":"\\u7532","groupName":"G","roomType":"1"},"seq":{"gw":"g2","n":8}}',
        b'{"kind":"message","robot_id":"wt_9","received_at":"%s","body":' % at.encode()
        + b'{"receivedName":null,"roomType":"x"},"seq":{"gw":"g2","n":9}}',
        b'{"kind":"online","robot_id":"wt_9","body":{}}',
        b"not json",
        b'{"action":"cancel_alert","at":"%s","session_id":"group:G","alert_id":"a"}' % at.encode(),
    ]
    lines = day_lines[:600] + odd + day_lines[600:]
    archive = write_archive(tmp_path / "day.jsonl.zst", lines)
    items = partial(archive_items, archive, timedelta(seconds=60), timedelta(seconds=1), UNTIL)
    for count in (1, 2, 3):
        scan = scan_archive(archive, (SHARDS, count))
        assert scan.routes is not None and len(scan.routes.owners) == len(lines)
        if count == 1:  # one worker: the stamps only
            assert list(items(None, scan.routes)) == list(items())
            continue
        for i in range(count):
            plain = ArchiveSlice(i, count, SHARDS, marks=i == 0)
            routed = ArchiveSlice(i, count, SHARDS, marks=i == 0, routes=scan.routes.for_slice(i))
            assert list(items(routed)) == list(items(plain))
    assert scan_archive(archive).routes is None  # not asked for


@pytest.mark.parametrize(
    "body",
    [
        {"receivedName": "甲", "groupName": "A群", "groupRemark": "A", "roomType": 1},
        {"receivedName": "甲", "groupName": "", "groupRemark": "A", "roomType": "3"},
        {"receivedName": "甲", "groupName": None, "groupRemark": 7, "roomType": " 1 "},
        {"receivedName": "甲\x00乙", "roomType": 2},
        {"receivedName": "甲", "roomType": 4, "groupName": "x\x00"},
        {"receivedName": "甲", "roomType": 2.0},
    ],
)
def test_a_slice_finds_the_conversation_the_parse_step_finds(body) -> None:
    record = {"kind": "message", "robot_id": "wt_1", "received_at": "2025-03-12T01:00:00.000Z", "body": body}
    (parsed,) = parse_all(orjson.dumps(record))
    assert conversation_of("wt_1", body) == parsed.message.session_id
    assert conversation_of("wt_1", body) == parsed.message.session_id  # the validated fields, kept


def test_a_slice_rejects_again_what_it_rejected_once() -> None:
    body = {"receivedName": None, "roomType": "1"}
    for _ in range(2):  # the second time from what the first validation kept
        with pytest.raises(ValueError):
            conversation_of("wt_1", body)


def test_an_archive_out_of_order_is_sorted_first(tmp_path, day_lines, one_worker) -> None:
    shuffled = list(day_lines)
    random.Random(3).shuffle(shuffled)
    archive = write_archive(tmp_path / "shuffled.jsonl.gz", shuffled)
    assert not scan_archive(archive).in_order
    assert replay(archive) == one_worker


@pytest.mark.parametrize("suffix", [".zst", ".gz"])
def test_a_truncated_or_corrupt_compressed_archive_is_a_clear_error(tmp_path, day_lines, suffix) -> None:
    good = write_archive(tmp_path / f"good.jsonl{suffix}", day_lines).read_bytes()
    truncated = tmp_path / f"truncated.jsonl{suffix}"
    truncated.write_bytes(good[: len(good) * 2 // 3])
    corrupt = tmp_path / f"corrupt.jsonl{suffix}"
    corrupt.write_bytes(good[:40] + bytes(b ^ 0x5A for b in good[40:80]) + good[80:])
    with pytest.raises(ArchiveError, match="truncated"):
        scan_archive(truncated)
    with pytest.raises(ArchiveError, match="corrupt"):
        scan_archive(corrupt)
    r = subprocess.run(
        [sys.executable, "-m", "commands.cli", "replay", str(truncated), "--out", str(tmp_path / "o.jsonl")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    said = r.stderr.replace("\n", "")  # rich wraps long lines
    assert "truncated" in said and str(truncated.name) in said
    assert "Traceback" not in said


def test_gzip_archives_of_several_members_are_read_whole(tmp_path) -> None:
    archive = tmp_path / "two.jsonl.gz"
    archive.write_bytes(gzip.compress(b'{"a":1}\n') + gzip.compress(b'{"a":2}\n'))
    assert list(iter_lines(archive)) == [b'{"a":1}', b'{"a":2}']


def test_partition_merge_writes_in_event_time_as_soon_as_every_partition_has_spoken() -> None:
    a, b = ("raw", 0), ("raw", 1)
    merge = PartitionMerge([a, b])
    merge.add(a, "2025-01-01T00:00:01.000Z", b"a1")
    merge.add(a, "2025-01-01T00:00:03.000Z", b"a3")
    assert list(merge.pop()) == []  # b may still send something earlier
    merge.add(b, "2025-01-01T00:00:02.000Z", b"b2")
    assert [v for _, v in merge.pop()] == [b"a1", b"b2"]  # then b is empty again: wait
    merge.end(b)
    assert [v for _, v in merge.pop()] == [b"a3"]
    merge.end(a)
    assert merge.done


def test_the_replay_benchmark_runs(tmp_path) -> None:
    """benchmarks/bench_replay.py --smoke (so the benchmark does not rot; its figures mean nothing here)."""
    r = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_replay.py"), "--smoke"],
        cwd=tmp_path,
        env={**settings().as_env(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay --workers 1: 500 records" in r.stdout and "replay --workers 2: 500 records" in r.stdout
    assert "same events: True" in r.stdout


def test_the_desk_reads_back_each_desk_input_event_as_parse_event_reads_it(tmp_path, day) -> None:
    """`trusted_event` (the parent's desk reading the slices' desk inputs without validating them again)
    builds the very event `parse_event` builds: same types, same values, same time zones, same fields set;
    an event it does not rebuild is validated."""
    outs = [tmp_path / f"events-{i}.jsonl" for i in range(2)]
    _run_slices(day, outs, settings(), scan_archive(day), None, UNTIL)
    payloads = [
        line.split(b"\t", 2)[2]
        for p in outs
        for line in desk_inputs_path(p).read_bytes().splitlines()
        if line.split(b"\t", 2)[1] == b"event"
    ]
    step = EscalationStep(at=UNTIL, from_level=1, to_level=2, by="repeat")
    alert = {
        "alert_id": "a1", "alert_type": "no_staff_available", "alert_key": "k", "level": 2, "status": "cancelled",
        "escalation_count": 1, "escalation_history": [step], "raised_at": UNTIL, "last_triggered_at": UNTIL,
        "cancelled_at": UNTIL, "notified_at": None, "trigger_count": 1, "version": 3,
    }  # fmt: skip
    payloads += [
        AlertRaised.event(event_time=UNTIL, session_id="desk", alert_id="a1", alert_type="x", level=2,
                          alert=alert).to_json(),
        TaskReminder.make(task_id="t1", minutes=30).at(UNTIL, "s1").to_json(),  # an int in a float field
        StaffStatus.make(name="a", status="busy").at(UNTIL, "desk").to_json(),  # not a desk input: validated
    ]  # fmt: skip
    kinds = set()
    for payload in payloads:
        trusted, parsed = trusted_event(payload), parse_event(payload)
        assert_same_model(trusted, parsed)
        kinds.add(parsed.event)
    assert {"task_created", "task_status", "alert_raised", "alert_escalated", "task_reminder"} <= kinds


def assert_same_model(a: object, b: object) -> None:
    assert type(a) is type(b), (a, b)
    if isinstance(a, BaseModel):
        assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__  # type: ignore[attr-defined]
        assert a.__dict__.keys() == b.__dict__.keys()
        for name in a.__dict__:
            assert_same_model(a.__dict__[name], b.__dict__[name])
    elif isinstance(a, list):
        assert len(a) == len(b)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True):  # type: ignore[call-overload]
            assert_same_model(x, y)
    else:
        assert a == b
        if isinstance(a, datetime):
            assert a.tzinfo == b.tzinfo  # type: ignore[attr-defined]
