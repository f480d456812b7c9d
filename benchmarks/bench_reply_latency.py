"""Webhook to `reply_scheduled` latency on the live stack (not a test).

    .venv/bin/python benchmarks/bench_reply_latency.py [--messages 300] [--rate 20]

Starts the embedded broker, PostgreSQL and Redis, the live dataflow and the gateway as processes (as
`worktool up` does), then posts `--messages` owners' questions, each in its own group, at `--rate` per
second, and follows worktool.monitor: the latency of a message is from the moment its webhook was sent to
the moment its `reply_scheduled` event is read from the monitor topic (the reply delay itself excluded:
that is the event's due_time, not its arrival). Prints p50/p95/p99/max.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import orjson
from confluent_kafka import OFFSET_END, Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, free_port  # noqa: E402
from infra.kafka_admin import ensure_topics, topic_plan  # noqa: E402
from infra.migrate import apply_up  # noqa: E402
from tests.support import answers, spawn, spawn_dataflow, stop, wait_until  # noqa: E402
from worktool.settings import Settings  # noqa: E402

CONFIG = """
robots:
  - {robot_id: wt_day, name: 运营助理小A, role: reply_day}
  - {robot_id: wt_night, name: 运营助理小夜, role: reply_night}
"""


def follow(
    bootstrap: str,
    topic: str,
    seen: dict[str, float],
    stop_flag: threading.Event,
    ready: threading.Event,
    produced: list[float],
) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in parts])
    consumer.consume(10, 1.0)  # the assignment takes effect
    ready.set()
    while not stop_flag.is_set():
        for msg in consumer.consume(500, 0.05):
            if msg.error() is None:
                event = orjson.loads(msg.value())
                if event["event"] == "reply_scheduled":
                    seen.setdefault(event["session_id"], time.perf_counter())
                    # Where the time goes: the gateway's stamp -> the dataflow's produce of the event.
                    stamp = datetime.fromisoformat(event["event_time"].replace("Z", "+00:00")).timestamp()
                    produced.append(msg.timestamp()[1] / 1000 - stamp)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--snapshot-s", type=int, default=2, help="the dataflow's snapshot (epoch) interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "business.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        with (
            EmbeddedKafka(root / "kafka") as kafka,
            EmbeddedPostgres(root / "pg", durable=False) as pg,
            EmbeddedRedis(root / "redis") as redis,
        ):
            settings = Settings(
                KAFKA_BOOTSTRAP_SERVERS=kafka.url, DATABASE_URL=pg.url, REDIS_URL=redis.url,
                WORKTOOL_DATA_DIR=str(root / "data"), WORKTOOL_HTTP_PORT=free_port(), WORKTOOL_CONFIG=str(config), WORKTOOL_SNAPSHOT_INTERVAL_S=args.snapshot_s,
            )  # fmt: skip
            ensure_topics(kafka.url, topic_plan(settings))
            apply_up(pg.url)
            flow = spawn_dataflow(settings, root / "dataflow.log")
            gateway = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, root / "gateway.log")
            base = f"http://127.0.0.1:{settings.http_port}"
            seen: dict[str, float] = {}
            produced: list[float] = []
            stop_flag, ready = threading.Event(), threading.Event()
            follower = threading.Thread(
                target=follow, args=(kafka.url, settings.topic_monitor, seen, stop_flag, ready, produced)
            )
            try:
                wait_until(lambda: answers(f"{base}/healthz"), 120, what="/healthz")
                follower.start()
                ready.wait(30)
                sent: dict[str, float] = {}
                with httpx.Client(base_url=base, timeout=5) as client:
                    # The day robot reports a first message in every group, so it is known to sit there.
                    for i in range(args.messages):
                        group = f"压测群{i}"
                        body = {"spoken": "佣金什么时候结算？", "rawSpoken": "佣金什么时候结算？", "receivedName": f"号主{i}",
                                "groupName": group, "groupRemark": "", "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip
                        started = time.perf_counter()
                        client.post("/worktool/callback/message", params={"robotId": "wt_day"}, json=body)
                        sent[f"group:{group}"] = started
                        time.sleep(max(0.0, started + 1 / args.rate - time.perf_counter()))
                wait_until(lambda: len(seen) >= len(sent), 60, what="every reply_scheduled")
            finally:
                stop_flag.set()
                stop(gateway)
                stop(flow)
            latencies = sorted((seen[s] - t) * 1000 for s, t in sent.items() if s in seen)
            q = statistics.quantiles(latencies, n=100)
            print(
                f"{len(latencies)} messages at {args.rate:g}/s: webhook -> reply_scheduled read from the monitor topic"
            )
            print(f"  p50 {q[49]:.0f} ms, p95 {q[94]:.0f} ms, p99 {q[98]:.0f} ms, max {latencies[-1]:.0f} ms")
            inner = statistics.quantiles([p * 1000 for p in produced], n=100)
            print(
                f"  of which gateway stamp -> event produced by the dataflow: p50 {inner[49]:.0f} ms, "
                f"p99 {inner[98]:.0f} ms"
            )


if __name__ == "__main__":
    main()
