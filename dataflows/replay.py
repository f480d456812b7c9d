"""Replay and archive: run the same flow over a JSONL archive in event time, and dump worktool.raw
into that archive format. The command-line side (progress bars, messages) is commands/replay.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import orjson
from bytewax.testing import TestingSink, run_main

from classifiers import build_classifier, call_log_events, close_classifier
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import ArchiveSource
from sinks.jsonl import JsonlSink
from worktool.config import load_config
from worktool.models import DlqRecord
from worktool.settings import Settings, get_settings


def replay_archive(
    path: Path,
    out: IO[bytes],
    settings: Settings | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
) -> tuple[int, list[DlqRecord]]:
    """Run the flow over `path`, writing monitor events to `out`. Returns (records, rejected).
    `until`: after the archive, advance the clock to this time so that what is due by then fires
    (without it, timers pending at the end of the archive stay pending).
    `on_start(total records)` and `on_progress(records done)` report progress."""
    settings = settings or get_settings()
    config = load_config(settings.config_path)
    classifier = build_classifier(settings, config)
    rejected: list[DlqRecord] = []
    try:
        source = ArchiveSource(
            path,
            timedelta(seconds=settings.replay_tick_interval_s),
            on_progress=on_progress,
            lateness=timedelta(seconds=settings.allowed_lateness_s),
            until=until,
        )
        if on_start is not None:
            on_start(source.record_count)
        sinks = FlowSinks(events=[JsonlSink(out)], dlq=[TestingSink(rejected)])
        flow = build_flow(
            source,
            sinks,
            classifier,
            FlowOptions.from_settings(settings, config),
            extra_events=call_log_events(classifier),
        )
        run_main(flow)
    finally:
        close_classifier(classifier)
    out.flush()
    return source.record_count, rejected


def dump_topics(
    bootstrap: str, topics: list[str], out: IO[bytes], on_record=None, idle_s: float = 3.0
) -> int:
    """Every record of `topics` (the raw and the control topic), sorted by event time (received_at of a
    raw record, at of a control record). Reads each partition to its end (partition EOF; Tansu's high
    watermark is unreliable), then stops."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

    from infra import kafka_clients

    consumer = kafka_clients.consumer("archive", bootstrap)
    try:
        parts: list[tuple[str, int]] = []
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                raise SystemExit(f"topic {topic} not found on {bootstrap}")
            parts += [(topic, p) for p in sorted(meta.partitions)]
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in parts])
        done: set[tuple[str, int]] = set()
        rows: list[tuple[str, bytes]] = []
        last_data = time.monotonic()
        while len(done) < len(parts) and time.monotonic() - last_data < idle_s:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        done.add((msg.topic(), msg.partition()))
                    continue
                last_data = time.monotonic()
                value = msg.value() or b""
                try:
                    record = orjson.loads(value)
                    stamp = record.get("received_at") or record.get("at") or ""
                except (orjson.JSONDecodeError, AttributeError):
                    stamp = ""
                rows.append((stamp if isinstance(stamp, str) else "", value))
                if on_record:
                    on_record()
    finally:
        consumer.close()
    rows.sort(key=lambda r: r[0])
    out.writelines(value + b"\n" for _, value in rows)
    return len(rows)
