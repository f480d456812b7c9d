"""Webhook to `message_classified` and to `reply_scheduled` latency on the live stack (not a test).

    .venv/bin/python benchmarks/bench_reply_latency.py [--messages 300] [--rate 20] [--json out.json]

Starts the embedded broker, PostgreSQL and Redis, the live dataflow and the gateway as processes (as
`worktool up` does), then posts `--messages` owners' questions, each in its own group, at `--rate` per
second, and follows worktool.raw and worktool.monitor. For every message it records when the webhook was
sent, the gateway's stamp (`received_at`), the Kafka timestamps of its raw record (the gateway's produce)
and of its `message_classified` / `reply_scheduled` events (the dataflow's produce), and when the
benchmark read them. Prints p50/p95/p99/max of webhook -> event read (the reply delay itself excluded:
that is the event's due_time, not its arrival), and of each stage between.

`--repo DIR` runs the stack of another checkout (its own modules, started with the Python running this
script, so use that checkout's venv): the same load against older code, for a before/after comparison
in one sitting. It needs only what every version since the foundation round has (tests/support.py's
spawn helpers, the embedded servers, topic_plan/ensure_topics, apply_up).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

CONFIG = """
robots:
  - {robot_id: wt_day, name: 运营助理小A, role: reply_day}
  - {robot_id: wt_night, name: 运营助理小夜, role: reply_night}
"""
EVENTS = ("message_classified", "reply_scheduled")


def _module(*names: str) -> Any:
    """The first of `names` that imports (modules moved between packages over the project's history)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(names[-1])


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Follower(threading.Thread):
    """Reads worktool.raw and worktool.monitor from their ends; per group: when each record was read,
    its Kafka timestamp and the gateway's stamp."""

    def __init__(self, bootstrap: str, raw: str, monitor: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics = bootstrap, (raw, monitor)
        self.seen: dict[tuple[str, str], dict[str, float]] = {}  # (kind, group) -> times
        self.stop_flag, self.ready = threading.Event(), threading.Event()

    def run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "bench-latency",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }  # fmt: skip
        )
        parts = []
        for topic in self.topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            parts += [TopicPartition(topic, p, OFFSET_END) for p in meta]
        consumer.assign(parts)
        consumer.consume(10, 1.0)  # the assignment takes effect
        self.ready.set()
        while not self.stop_flag.is_set():
            for msg in consumer.consume(500, 0.05):
                if msg.error() is None:
                    self._record(msg.topic(), orjson.loads(msg.value()), msg.timestamp()[1] / 1000)
        consumer.close()

    def _record(self, topic: str, value: dict[str, Any], kafka_ts: float) -> None:
        now = time.time()
        if topic == self.topics[0]:
            group = (value.get("body") or {}).get("groupName")
            if group and value.get("kind", "message") == "message":
                self.seen.setdefault(
                    ("raw", group), {"read": now, "ts": kafka_ts, "stamp": _stamp(value["received_at"])}
                )
            return
        if value.get("event") in EVENTS:
            group = (value.get("data") or {}).get("group_name") or str(value.get("session_id", "")).split(
                ":", 1
            )[-1]
            self.seen.setdefault(
                (value["event"], group), {"read": now, "ts": kafka_ts, "stamp": _stamp(value["event_time"])}
            )


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else [values[0]] * 99
    return {"n": len(values), "p50": q[49], "p95": q[94], "p99": q[98], "max": values[-1]}


def _complete(seen: dict[tuple[str, str], Any], sent: dict[str, Any], done_sending: float) -> bool:
    """Every message classified, and every reply scheduled (unless this version schedules no replies:
    none at all 5 s after the last message was sent)."""
    if not all(("message_classified", g) in seen for g in sent):
        return False
    replies = sum(("reply_scheduled", g) in seen for g in sent)
    return replies == len(sent) or (replies == 0 and time.monotonic() > done_sending + 5)


def measure(settings: Any, messages: int, rate: float, wait_s: float = 60.0) -> dict[str, Any]:
    """Post `messages` questions at `rate` to the gateway of `settings` and follow the topics; the stack
    (broker, dataflow, gateway) must be running. Returns the figures (ms) and how many arrived."""
    base = f"http://127.0.0.1:{settings.http_port}"
    follower = Follower(settings.kafka_bootstrap_servers, settings.topic_raw, settings.topic_monitor)
    follower.start()
    follower.ready.wait(30)
    sent: dict[str, tuple[float, float]] = {}
    run = f"{time.time():.0f}"
    try:
        with httpx.Client(base_url=base, timeout=5) as client:
            for i in range(messages):
                group = f"压测群{run}-{i}"
                body = {"spoken": "佣金什么时候结算？", "rawSpoken": "佣金什么时候结算？", "receivedName": f"号主{i}",
                        "groupName": group, "groupRemark": "", "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip
                started = time.perf_counter()
                wall = time.time()
                client.post(
                    "/worktool/callback/message", params={"robotId": "wt_day"}, json=body
                ).raise_for_status()
                sent[group] = (wall, (time.perf_counter() - started) * 1000)
                time.sleep(max(0.0, started + 1 / rate - time.perf_counter()))
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not _complete(follower.seen, sent, deadline - wait_s):
            time.sleep(0.1)
    finally:
        follower.stop_flag.set()
        follower.join(10)
    seen = follower.seen
    out: dict[str, Any] = {
        "messages": messages,
        "rate": rate,
        "http_ms": quantiles([a for _, a in sent.values()]),
    }
    out["arrived"] = {kind: sum((kind, g) in seen for g in sent) for kind in ("raw", *EVENTS)}
    for event in EVENTS:
        got = [(sent[g][0], seen.get(("raw", g)), seen[(event, g)])
               for g in sent if (event, g) in seen]  # fmt: skip
        out[event] = {
            "webhook_to_read_ms": quantiles([(e["read"] - w) * 1000 for w, _, e in got]),
            # Kafka timestamps of the records: the gateway's produce() of the raw record, the
            # dataflow's produce() of the event; then the benchmark consumer's read.
            "stamp_to_raw_produce_ms": quantiles([(r["ts"] - r["stamp"]) * 1000 for _, r, _ in got if r]),
            "raw_produce_to_event_produce_ms": quantiles(
                [(e["ts"] - r["ts"]) * 1000 for _, r, e in got if r]
            ),
            "event_produce_to_read_ms": quantiles([(e["read"] - e["ts"]) * 1000 for _, _, e in got]),
        }
    return out


def report(figures: dict[str, Any]) -> str:
    lines = [f"{figures['messages']} messages at {figures['rate']:g}/s; arrived: {figures['arrived']}"]

    def row(name: str, q: dict[str, float]) -> str:
        if not q:
            return f"  {name:<40} -"
        return f"  {name:<40} p50 {q['p50']:6.1f}  p95 {q['p95']:6.1f}  p99 {q['p99']:6.1f}  max {q['max']:6.1f} ms"

    lines.append(row("webhook answered (HTTP round trip)", figures["http_ms"]))
    if "idle_cpu_percent" in figures:
        lines.append(f"  dataflow idle afterwards: {figures['idle_cpu_percent']:.1f} % of a core")
    for event in EVENTS:
        f = figures[event]
        lines.append(f"webhook -> {event}:")
        lines.append(row("webhook sent -> event read", f["webhook_to_read_ms"]))
        lines.append(row("  gateway stamp -> raw produced", f["stamp_to_raw_produce_ms"]))
        lines.append(row("  raw produced -> event produced", f["raw_produce_to_event_produce_ms"]))
        lines.append(row("  event produced -> read", f["event_produce_to_read_ms"]))
    return "\n".join(lines)


def idle_cpu(pid: int, seconds: float, settle_s: float = 3.0) -> float:
    """CPU of the process `pid` and its children while no message arrives (% of one core)."""
    import psutil

    time.sleep(settle_s)
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]

    def used() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    before, started = used(), time.monotonic()
    time.sleep(seconds)
    return 100 * (used() - before) / (time.monotonic() - started)


def run_stack(
    repo: Path, root: Path, messages: int, rate: float, snapshot_s: int, warmup: int, idle_s: float = 0
) -> dict[str, Any]:
    """Start the embedded stack, the dataflow and the gateway of the checkout `repo`, then measure."""
    sys.path.insert(0, str(repo))
    embedded = _module("infra.embedded", "worktool.embedded")
    kafka_admin = _module("infra.kafka_admin", "worktool.kafka_admin")
    migrate = _module("infra.migrate", "worktool.migrate")
    support = importlib.import_module("tests.support")
    from worktool.settings import Settings

    cli = "commands.cli" if (repo / "commands" / "cli.py").exists() else "worktool.cli"
    config = root / "business.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    with (
        embedded.EmbeddedKafka(root / "kafka") as kafka,
        embedded.EmbeddedPostgres(root / "pg", durable=False) as pg,
        embedded.EmbeddedRedis(root / "redis") as redis,
    ):
        settings = Settings(
            KAFKA_BOOTSTRAP_SERVERS=kafka.url, DATABASE_URL=pg.url, REDIS_URL=redis.url,
            WORKTOOL_DATA_DIR=str(root / "data"), WORKTOOL_HTTP_PORT=embedded.free_port(),
            WORKTOOL_CONFIG=str(config), WORKTOOL_SNAPSHOT_INTERVAL_S=snapshot_s,
        )  # fmt: skip
        kafka_admin.ensure_topics(kafka.url, kafka_admin.topic_plan(settings))
        migrate.apply_up(pg.url)
        flow = support.spawn([sys.executable, "-m", cli, "dataflow"], settings, root / "dataflow.log")
        gateway = support.spawn([sys.executable, "-m", cli, "gateway"], settings, root / "gateway.log")
        try:
            support.wait_until(lambda: support.answers(f"http://127.0.0.1:{settings.http_port}/healthz"), 120)
            if warmup:
                measure(settings, warmup, rate)  # the first records pay for connections and caches
            figures = measure(settings, messages, rate)
            if idle_s:
                figures["idle_cpu_percent"] = idle_cpu(flow.pid, idle_s)
            return figures
        finally:
            support.stop(gateway)
            support.stop(flow)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--snapshot-s", type=int, default=2, help="the dataflow's snapshot (epoch) interval")
    parser.add_argument("--warmup", type=int, default=20, help="messages sent (and not counted) first")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument(
        "--idle-s", type=float, default=20, help="then the dataflow's idle CPU over this long"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="keep the servers' data and the processes' logs here")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 8 messages, 1 s idle")
    args = parser.parse_args()
    if args.smoke:
        args.messages, args.warmup, args.idle_s = 8, 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        root = args.logs or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        figures = run_stack(
            args.repo.resolve(), root, args.messages, args.rate, args.snapshot_s, args.warmup, args.idle_s
        )
    print(report(figures))
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
