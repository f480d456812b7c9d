"""Dispatcher throughput (not a test): commands per second from worktool.commands to the recorded outcome
on worktool.raw, against the local fake WorkTool with the rate limit lifted.

    .venv/bin/python benchmarks/bench_dispatcher.py [--commands 20000] [--robots 1,100,2000] [--runs 3]

Starts the embedded broker and Redis and a fake WorkTool (tests/fakes/worktool_server.py, answering at
once) in this process; for each robot count, runs `worktool dispatcher` in a subprocess, waits until it
holds its partitions, then produces the commands (due now, spread evenly over the robots) and waits for
an accepted record naming every one of them. Reports commands/s (first produce to last record), requests,
mean batch size, and the latency from a command's due time (set just before it is produced) to its
accepted record (p50 / p99). With 2,000 robots and 20,000 commands most requests carry a handful of
commands: the per-request cost dominates.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.embedded import EmbeddedKafka, EmbeddedRedis  # noqa: E402
from infra.kafka_admin import ensure_topics, topic_plan  # noqa: E402
from tests.fakes.worktool_server import FakeWorkTool, accept  # noqa: E402
from tests.support import env_for  # noqa: E402
from worktool.models import CommandCause, CommandRecord  # noqa: E402
from worktool.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def commands_for(count: int, robots: int) -> list[CommandRecord]:
    now = datetime.now(UTC)
    return [
        CommandRecord(
            command_id=f"bench-{uuid.uuid4().hex}",
            channel="wecom",
            robot_id=f"wt_bench_{i % robots:04d}",
            target=f"视频号运营{i % 500}群",
            content="您好，已收到您的问题，我们马上为您处理。",
            at_list=["用户甲-138****0000"] if i % 2 else [],
            due_time=now,
            cause=CommandCause(event="reply_scheduled", message_id=f"msg-{i}"),
        )
        for i in range(count)
    ]


def wait_assigned(log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and b'"event":"assigned","partitions":[0' in log.read_bytes():
            return
        time.sleep(0.1)
    raise TimeoutError(f"the dispatcher did not join its group (see {log})")


def run_once(bootstrap: str, redis_url: str, fake: FakeWorkTool, work: Path, count: int, robots: int) -> dict:
    suffix = uuid.uuid4().hex[:8]
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        redis_url=redis_url,
        data_dir=work,
        api_base_url=fake.url,
        topic_raw=f"worktool.raw.{suffix}",
        topic_commands=f"worktool.commands.{suffix}",
        dispatcher_group=f"bench-{suffix}",
        dispatch_rate_key=f"bench:rate:{suffix}",
        dispatch_rate_requests=1_000_000,  # lifted
        dispatch_rate_window_s=1.0,
        dispatch_rate_margin_s=0.0,
        dispatcher_metrics_port=0,
    )
    ensure_topics(bootstrap, topic_plan(settings))
    log = work / f"dispatcher-{suffix}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands.cli", "dispatcher"],
        env=env_for(settings),
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-tail-{suffix}"})
    try:
        wait_assigned(log)
        parts = consumer.list_topics(settings.topic_raw, timeout=10).topics[settings.topic_raw].partitions
        consumer.assign([TopicPartition(settings.topic_raw, p, OFFSET_BEGINNING) for p in parts])
        requests_before = len(fake.sends())
        commands = commands_for(count, robots)
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
        started = time.time()
        for c in commands:
            producer.produce(settings.topic_commands, c.to_json(), (c.robot_id or "").encode())
        producer.flush(60)
        due = {c.command_id: c.due_time.timestamp() for c in commands}
        latencies: list[float] = []
        finished = started
        while len(latencies) < count:
            if time.time() - started > 600:
                raise TimeoutError(f"{len(latencies)} of {count} outcomes after 600 s")
            for message in consumer.consume(1000, 0.5):
                if message.error():
                    continue
                record = orjson.loads(message.value())
                at = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00")).timestamp()
                latencies.extend(at - due[c] for c in record["body"]["commandIds"])
                finished = max(finished, at)
        requests = len(fake.sends()) - requests_before
    finally:
        proc.terminate()
        proc.wait(30)
        consumer.close()
    latencies.sort()
    return {
        "rate": count / (finished - started),
        "requests": requests,
        "batch": count / requests,
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=20_000)
    parser.add_argument("--robots", default="1,100,2000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only shows the benchmark works")
    args = parser.parse_args()
    if args.smoke:
        args.commands, args.robots, args.runs = 40, "2", 1
    with (
        tempfile.TemporaryDirectory(prefix="bench-dispatcher-") as tmp,
        EmbeddedKafka(Path(tmp) / "kafka") as kafka,
        EmbeddedRedis(Path(tmp) / "redis") as redis_server,
        FakeWorkTool(default=accept()) as fake,
    ):
        print(f"{args.commands} commands per run, {args.runs} runs (median)")
        print(f"{'robots':>7} {'commands/s':>11} {'requests':>9} {'batch':>6} {'p50 s':>7} {'p99 s':>7}")
        for robots in (int(r) for r in args.robots.split(",")):
            runs = [
                run_once(kafka.url, redis_server.url, fake, Path(tmp), args.commands, robots)
                for _ in range(args.runs)
            ]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{robots:>7} {med['rate']:>11,.0f} {med['requests']:>9,.0f} {med['batch']:>6.1f} "
                f"{med['p50']:>7.2f} {med['p99']:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
