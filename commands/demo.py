"""`worktool up --demo`: play the bundled sample day through the live gateway, then show what came out.

The archive's records are POSTed to the gateway's webhook for their kind, in order, with the gaps
between them compressed so the whole day takes about `duration_s`. Message bodies alternate between
JSON and form encoding, as WorkTool robots send either (callBackRequestType).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from worktool.models import WEBHOOK_KINDS, to_utc
from worktool.settings import Settings

SAMPLE_DAY = Path(__file__).parent / "data" / "sample_day.jsonl"


@dataclass
class PlayStats:
    sent: int = 0
    failed: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def load_archive(path: Path) -> list[dict[str, Any]]:
    records = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return sorted(records, key=lambda r: to_utc(r["received_at"]))


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_flat(body: dict[str, Any]) -> bool:
    return all(isinstance(v, str | int | float | bool) for v in body.values())


def _schedule(records: list[dict[str, Any]], duration_s: float) -> list[float]:
    """Seconds after the start at which to send each record: event time compressed linearly."""
    times = [to_utc(r["received_at"]) for r in records]
    span = (times[-1] - times[0]).total_seconds() if times else 0.0
    scale = duration_s / span if span > 0 else 0.0
    return [(t - times[0]).total_seconds() * scale for t in times]


def post_record(client: httpx.Client, record: dict[str, Any], as_form: bool) -> httpx.Response:
    url = f"/worktool/callback/{record['kind']}"
    params = {"robotId": record["robot_id"]}
    body = record["body"]
    if as_form and _is_flat(body):
        return client.post(url, params=params, data={k: _form_value(v) for k, v in body.items()})
    return client.post(url, params=params, json=body)


def play(
    archive: Path = SAMPLE_DAY,
    base_url: str = "http://127.0.0.1:8080",
    duration_s: float = 20.0,
    console: Console | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PlayStats:
    """POST every webhook record of the archive to the gateway, time-compressed."""
    records = [r for r in load_archive(archive) if r["kind"] in WEBHOOK_KINDS]
    offsets = _schedule(records, duration_s)
    stats = PlayStats()
    progress = Progress(
        TextColumn("[bold]sample day"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[clock]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with httpx.Client(base_url=base_url, timeout=5.0, transport=transport) as client, progress:
        task = progress.add_task("play", total=len(records), clock="")
        start = time.monotonic()
        messages = 0
        for record, offset in zip(records, offsets, strict=True):
            time.sleep(max(0.0, start + offset - time.monotonic()))
            as_form = record["kind"] == "message" and messages % 3 == 2
            messages += record["kind"] == "message"
            try:
                response = post_record(client, record, as_form)
                ok = response.status_code == 200 and response.json().get("code") == 0
                if not ok:
                    stats.errors.append(
                        f"{record['kind']}: HTTP {response.status_code} {response.text[:120]}"
                    )
            except httpx.HTTPError as e:
                ok = False
                stats.errors.append(f"{record['kind']}: {type(e).__name__}: {e}")
            stats.sent += ok
            stats.failed += not ok
            stats.by_kind[record["kind"]] += 1
            clock = _local_clock(record["received_at"])
            progress.update(task, advance=1, clock=clock)
    return stats


def _local_clock(received_at: str) -> str:
    from zoneinfo import ZoneInfo

    return (
        datetime.fromisoformat(received_at.replace("Z", "+00:00"))
        .astimezone(ZoneInfo("Asia/Shanghai"))
        .strftime("%H:%M 北京时间")
    )


def wait_for_messages(database_url: str, timeout_s: float = 60.0, settle_s: float = 3.0) -> int:
    """Rows in session_messages once the count has stopped growing for `settle_s` (or at the timeout)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            count = conn.execute("SELECT count(*) FROM session_messages").fetchone()[0]
            if count != last:
                last, last_change = count, time.monotonic()
            elif count > 0 and time.monotonic() - last_change >= settle_s:
                break
            time.sleep(0.5)
    return max(last, 0)


def database_summary(database_url: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        messages, sessions = conn.execute(
            "SELECT count(*), count(DISTINCT session_id) FROM session_messages"
        ).fetchone()
        senders = dict(
            conn.execute(
                "SELECT coalesce(sender_type, '?'), count(*) FROM session_messages GROUP BY 1"
            ).fetchall()
        )
        alerts = conn.execute(
            "SELECT alert_type || ' L' || alert_level || ' ' || status, count(*) FROM alert_history GROUP BY 1"
        ).fetchall()
        commands = conn.execute(
            "SELECT channel || ' ' || status, count(*) FROM robot_commands GROUP BY 1"
        ).fetchall()
        flagged = conn.execute(
            "SELECT count(*) FROM session_messages WHERE is_staff_intervention"
        ).fetchone()[0]
    return {"messages": messages, "sessions": sessions, "senders": senders, "alerts": dict(alerts),
            "commands": dict(commands), "interventions": flagged}  # fmt: skip


def monitor_event_counts(
    bootstrap: str, topic: str, idle_s: float = 1.5, max_s: float = 15.0
) -> Counter[str]:
    """Events on the monitor topic by type: read every partition from the start until nothing arrives
    for `idle_s` (the broker's high watermark is not trustworthy on Tansu)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from infra import kafka_clients

    consumer = kafka_clients.consumer("tool", bootstrap, group_id="worktool-demo")
    counts: Counter[str] = Counter()
    try:
        partitions = consumer.list_topics(topic, timeout=5).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + max_s
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < idle_s and time.monotonic() < deadline:
            batch = consumer.consume(1000, timeout=0.3)
            for msg in batch:
                if msg.error() is None:
                    counts[orjson.loads(msg.value()).get("event", "?")] += 1
            if batch:
                idle_since = time.monotonic()
    finally:
        consumer.close()
    return counts


def run(base_url: str, database_url: str, kafka_bootstrap: str, settings: Settings, console: Console) -> None:
    """The whole demo: play, wait for the dataflow, print a summary."""
    console.print(f"[bold]demo:[/] playing {SAMPLE_DAY.name} through {base_url} (a day in ~20 s)")
    stats = play(SAMPLE_DAY, base_url, console=console)
    console.print(f"sent {stats.sent} webhooks ({dict(stats.by_kind)}), {stats.failed} failed")
    for error in stats.errors[:5]:
        console.print(f"  [red]{error}[/]")
    console.print("waiting for the dataflow to write the messages to PostgreSQL ...")
    wait_for_messages(database_url)
    summary = database_summary(database_url)
    events = monitor_event_counts(kafka_bootstrap, settings.topic_monitor)

    table = Table(title="demo summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("messages in session_messages", str(summary["messages"]))
    table.add_row("sessions", str(summary["sessions"]))
    for sender, n in sorted(summary["senders"].items()):
        table.add_row(f"  from {sender}", str(n))
    table.add_row("messages needing intervention", str(summary["interventions"]))
    for alert, n in sorted(summary["alerts"].items()):
        table.add_row(f"alert {alert}", str(n))
    for command, n in sorted(summary["commands"].items()):
        table.add_row(f"command {command}", str(n))
    for event, n in events.most_common():
        table.add_row(f"event {event}", str(n))
    console.print(table)
    console.print("[bold green]demo done[/]: the stack keeps running (Ctrl-C to stop)")
