"""`worktool replay` over the bundled sample archive: deterministic, and the same decisions as the
in-memory flow."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

from tests.support import REPO

SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"


def replay(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "commands.cli", "replay", str(SAMPLE), "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_of_sample_archive_gives_the_same_events_twice(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    r1, r2 = replay(first), replay(second, "--no-progress")
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    assert first.read_bytes() == second.read_bytes()
    events = [orjson.loads(line) for line in first.read_bytes().splitlines()]
    kinds = Counter(e["event"] for e in events)
    records = sum(1 for line in SAMPLE.read_bytes().splitlines() if line.strip())
    assert kinds["message_classified"] > records // 2
    assert kinds["robot_joined_session"] >= 3
    for e in events:
        assert set(e) == {"schema_version", "event", "event_time", "session_id", "robot_id", "data"}
        assert e["event_time"].endswith("Z")
    assert "replayed" in r1.stderr


def test_replay_rejects_bad_lines_without_stopping(tmp_path):
    archive = tmp_path / "mixed.jsonl"
    good = SAMPLE.read_bytes().splitlines()[0]
    archive.write_bytes(b"not json\n" + good + b"\n" + b'{"kind":"message"}\n')
    out = tmp_path / "out.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "commands.cli", "replay", str(archive), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "2 rejected" in r.stderr
    assert out.read_bytes().count(b"\n") >= 1
