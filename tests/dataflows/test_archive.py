"""`worktool archive` dumps worktool.raw into the archive format (streaming, compressed by the file's
suffix), and `worktool replay` of that dump gives the same events as replaying the original archive."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from commands.demo import SAMPLE_DAY
from dataflows import replay as replay_module
from infra.archive_io import iter_lines, sniff
from tests.support import REPO, env_for, produce
from worktool.models import raw_record_key
from worktool.settings import Settings

pytestmark = pytest.mark.integration


def produce_sample_day(settings) -> list[bytes]:
    """The sample day's records on the raw topic, keyed as the gateway keys them; returns its lines."""
    lines = [line for line in SAMPLE_DAY.read_bytes().splitlines() if line.strip()]
    records = []
    for line in lines:
        rec = orjson.loads(line)
        records.append((raw_record_key(rec["kind"], rec["robot_id"], rec["body"]), line))
    produce(settings.kafka_bootstrap_servers, settings.topic_raw, records)
    return lines


def test_archive_then_replay_matches_the_original(settings_factory, unique_topics, tmp_path):
    settings = settings_factory(**unique_topics())
    lines = produce_sample_day(settings)

    dump = tmp_path / "dump.jsonl.zst"
    env = env_for(settings)
    r = subprocess.run(
        [sys.executable, "-m", "commands.cli", "archive", "--out", str(dump)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sniff(dump) == "zstd" and "(zstd)" in r.stderr
    dumped = list(iter_lines(dump))
    assert sorted(dumped) == sorted(lines)  # every record, byte for byte
    stamps = [orjson.loads(x)["received_at"] for x in dumped]
    assert stamps == sorted(stamps)  # in event time, whatever partition it came from

    def replay(path):
        out = tmp_path / f"{path.stem}.events.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "commands.cli", "replay", str(path), "--out", str(out)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return sorted(out.read_bytes().splitlines())

    assert replay(dump) == replay(SAMPLE_DAY)


def test_archive_merges_partitions_holding_only_a_few_records_of_each(
    settings_factory, unique_topics, tmp_path, monkeypatch, caplog
):
    """The k-way merge with a partition that runs ahead paused (at 3 records here): still every record,
    in event time, to a gzip file."""
    settings = settings_factory(**unique_topics())
    lines = produce_sample_day(settings)
    monkeypatch.setattr(replay_module, "PAUSE_AT", 3)
    dump = tmp_path / "dump.jsonl.gz"
    n = replay_module.dump_topics(
        settings.kafka_bootstrap_servers, [settings.topic_raw, settings.topic_control], dump
    )
    dumped = list(iter_lines(dump))
    assert n == len(lines) and sniff(dump) == "gzip"
    assert "no data for" not in caplog.text  # every partition read to its end, none given up on
    assert sorted(dumped) == sorted(lines)
    stamps = [orjson.loads(x)["received_at"] for x in dumped]
    assert stamps == sorted(stamps)


def test_archive_without_a_broker_says_so(tmp_path):
    env = env_for(Settings())  # no KAFKA_BOOTSTRAP_SERVERS
    r = subprocess.run(
        [sys.executable, "-m", "commands.cli", "archive", "--out", str(tmp_path / "x.jsonl")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "KAFKA_BOOTSTRAP_SERVERS" in r.stderr
