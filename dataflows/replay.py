"""`worktool replay` and `worktool archive`: run the same flow over a JSONL archive in event time, and
dump worktool.raw into that archive format."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, nullcontext
from datetime import timedelta
from pathlib import Path
from typing import IO

import orjson
from bytewax.testing import TestingSink, run_main
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dataflows.flow import FlowSinks, build_flow
from dataflows.main import flow_options, make_classifier
from dataflows.sources import ArchiveSource
from sinks.jsonl import JsonlSink
from worktool.config import ConfigError, load_config
from worktool.models import DlqRecord
from worktool.settings import Settings, get_settings

err = Console(stderr=True)


def _progress(enabled: bool) -> Progress | nullcontext:
    if not enabled:
        return nullcontext()
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=False,
    )


def replay_archive(
    path: Path, out: IO[bytes], settings: Settings | None = None, progress: bool = False
) -> tuple[int, list[DlqRecord]]:
    """Run the flow over `path`, writing monitor events to `out`. Returns (records, rejected)."""
    settings = settings or get_settings()
    config = load_config(settings.config_path)
    classifier, extra = make_classifier(settings, config)
    rejected: list[DlqRecord] = []
    with _progress(progress) as bar:
        task = None
        source = ArchiveSource(path, timedelta(seconds=settings.replay_tick_interval_s))
        if bar is not None:
            task = bar.add_task("replay", total=source.record_count)
            source.on_progress = lambda n: bar.advance(task, n)
        sinks = FlowSinks(events=[JsonlSink(out)], dlq=[TestingSink(rejected)])
        run_main(build_flow(source, sinks, classifier, flow_options(settings, config), extra_events=extra))
    out.flush()
    return source.record_count, rejected


def cli_replay(file: Path, out: Path | None, progress: bool | None) -> int:
    show = sys.stderr.isatty() if progress is None else progress
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            stream = stack.enter_context(out.open("wb")) if out else sys.stdout.buffer
            records, rejected = replay_archive(file, stream, progress=show)
    except ConfigError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    elapsed = time.perf_counter() - started
    err.print(f"replayed {records} records in {elapsed:.1f} s; {len(rejected)} rejected")
    for r in rejected[:5]:
        err.print(f"  rejected: {r.reason}")
    return 0


# ------------------------------------------------------------------------------------ archive


def dump_topic(bootstrap: str, topic: str, out: IO[bytes], on_record=None, idle_s: float = 3.0) -> int:
    """Every record of `topic`, sorted by received_at. Reads each partition to its end (partition EOF;
    Tansu's high watermark is unreliable), then stops."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "worktool-archive", "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise SystemExit(f"topic {topic} not found on {bootstrap}")
        parts = sorted(meta.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done: set[int] = set()
        rows: list[tuple[str, bytes]] = []
        last_data = time.monotonic()
        while len(done) < len(parts) and time.monotonic() - last_data < idle_s:
            for msg in consumer.consume(1000, 0.5):
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition())
                    continue
                last_data = time.monotonic()
                value = msg.value() or b""
                try:
                    stamp = orjson.loads(value).get("received_at", "")
                except orjson.JSONDecodeError:
                    stamp = ""
                rows.append((stamp if isinstance(stamp, str) else "", value))
                if on_record:
                    on_record()
    finally:
        consumer.close()
    rows.sort(key=lambda r: r[0])
    out.writelines(value + b"\n" for _, value in rows)
    return len(rows)


def cli_archive(out: Path) -> int:
    settings = get_settings()
    if not settings.kafka_bootstrap_servers:
        err.print("[red]KAFKA_BOOTSTRAP_SERVERS is not set (is `worktool up` running?)[/red]")
        return 2
    with out.open("wb") as f, _progress(sys.stderr.isatty()) as bar:
        task = bar.add_task("archive", total=None) if bar is not None else None
        n = dump_topic(settings.kafka_bootstrap_servers, settings.topic_raw, f,
                       on_record=(lambda: bar.advance(task)) if bar is not None else None)
    err.print(f"archived {n} records from {settings.topic_raw} to {out}")
    return 0
