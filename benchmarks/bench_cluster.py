"""Dataflow cluster throughput (not a test): records/s of 1 process x 1 worker against 2 x 1 and 2 x 2, on
the same 12-partition raw topic, in the same run.

    .venv/bin/python benchmarks/bench_cluster.py [--records 30000] [--shapes 1x1,2x1,2x2] [--rounds 1]
    .venv/bin/python benchmarks/bench_cluster.py --smoke     # tiny: 1x1 and 2x1 on 1,000 records

The embedded broker and PostgreSQL are started once; the records are produced once to a 12-partition
worktool.raw. Each shape then runs the live wiring (KafkaSource, tail=False -> the whole flow -> a monitor
topic of its own + the Postgres projection into a database of its own) as real bytewax processes
(`python -m bytewax.run ... -w W -i I -a ...`, as `worktool dataflow --processes N` runs them). The rate is
records / (last event written - first event written) over all processes, so process start-up is not counted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RAW_PARTITIONS = 12


class _Timing(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self.path, self.first, self.last, self.count = path, 0.0, 0.0, 0

    def write_batch(self, items: list[Any]) -> None:
        now = time.time()
        self.first = self.first or now
        self.last, self.count = now, self.count + len(items)

    def close(self) -> None:
        self.path.write_bytes(orjson.dumps({"first": self.first, "last": self.last, "events": self.count}))


class TimingSink(DynamicSink[Any]):
    """Per worker: the wall-clock time of its first and last event, written to a file at the end."""

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Timing:
        return _Timing(self.directory / f"timing-{worker_index}.json")


def flow(bootstrap: str, database_url: str, topic_raw: str, topic_monitor: str, out_dir: str) -> Dataflow:
    """The live flow of one bytewax process of the benchmark (imported by `python -m bytewax.run`)."""
    from bytewax.connectors.kafka import KafkaSource

    from classifiers import build_classifier, call_log_events
    from dataflows.flow import FlowOptions, FlowSinks, build_flow
    from sinks.kafka import ModelKafkaSink
    from sinks.postgres import PostgresEventSink
    from worktool.config import BusinessConfig
    from worktool.settings import Settings

    settings = Settings(kafka_bootstrap_servers=bootstrap, database_url=database_url)
    config = BusinessConfig()
    classifier = build_classifier(settings, config)
    # Finite (tail=False), without wall-clock ticks (as bench_dataflow.py --kafka): each process ends when
    # its partitions have been read.
    kafka = KafkaSource([bootstrap], [topic_raw], tail=False, batch_size=1000)
    sinks = FlowSinks(
        events=[
            ModelKafkaSink(bootstrap, topic_monitor),
            PostgresEventSink(database_url),
            TimingSink(out_dir),
        ]
    )
    return build_flow(
        kafka,
        sinks,
        classifier,
        FlowOptions.from_settings(settings, config),
        extra_events=call_log_events(classifier),
    )


def produce(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    from benchmarks.bench_dataflow import synthetic
    from worktool.models import raw_record_key

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True})
    for value in synthetic(n, groups=600):
        rec = orjson.loads(value)
        key = raw_record_key("message", rec["robot_id"], rec["body"]).encode()
        while True:
            try:
                p.produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.1)
    assert p.flush(60) == 0


def free_ports(n: int) -> list[int]:
    from dataflows.cluster import free_ports as ports

    return ports(n)


def run_shape(
    processes: int, workers: int, bootstrap: str, pg_admin_url: str, topic_raw: str, n: int
) -> dict:
    import psycopg

    from infra.kafka_admin import ensure_topics
    from infra.migrate import apply_up

    name = f"bench_{processes}x{workers}_{int(time.time() * 1000) % 10**8}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    apply_up(database_url)
    topic_monitor = f"worktool.monitor.{name}"
    ensure_topics(bootstrap, {topic_monitor: 3})
    with tempfile.TemporaryDirectory() as out:
        factory = f"benchmarks.bench_cluster:flow({bootstrap!r}, {database_url!r}, {topic_raw!r}, {topic_monitor!r}, {out!r})"
        addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(processes))
        cluster = ["-i", "{i}", "-a", addresses] if processes > 1 else []
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bytewax.run",
                    factory,
                    "-w",
                    str(workers),
                    *[a.format(i=i) for a in cluster],
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for i in range(processes)
        ]
        for p in procs:
            _, err = p.communicate(timeout=1800)
            if p.returncode != 0:
                raise SystemExit(
                    f"{processes}x{workers}: a process failed:\n{err.decode(errors='replace')[-3000:]}"
                )
        timings = [orjson.loads(f.read_bytes()) for f in Path(out).glob("timing-*.json")]
    firsts = [t["first"] for t in timings if t["first"]]
    # A tiny run (--smoke) can write every event in one batch: first == last. Not a rate, but not a crash.
    elapsed = max(max(t["last"] for t in timings) - min(firsts), 1e-3)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("select count(*) from session_messages").fetchone()[0]
    return {
        "shape": f"{processes}x{workers}",
        "records": n,
        "seconds": elapsed,
        "records_per_s": n / elapsed,
        "events": sum(t["events"] for t in timings),
        "session_messages": rows,
        "workers_with_events": len(firsts),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=30_000)
    ap.add_argument(
        "--shapes", default="1x1,2x1,2x2", help="processes x workers, comma-separated, run in order"
    )
    ap.add_argument("--rounds", type=int, default=1, help="repeat the shapes (alternated) this many times")
    ap.add_argument("--smoke", action="store_true", help="tiny: 1x1 and 2x1 on 1,000 records")
    args = ap.parse_args()
    if args.smoke:
        args.records, args.shapes, args.rounds = 1000, "1x1,2x1", 1
    shapes = [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")]

    from infra.embedded import EmbeddedKafka, EmbeddedPostgres
    from infra.kafka_admin import ensure_topics

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with (
        tempfile.TemporaryDirectory() as d,
        EmbeddedKafka(Path(d) / "k") as kafka,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        topic_raw = "worktool.raw"
        ensure_topics(kafka.url, {topic_raw: RAW_PARTITIONS})
        produce(kafka.url, topic_raw, args.records)
        print(f"{args.records} records on {topic_raw} ({RAW_PARTITIONS} partitions)", flush=True)
        for _ in range(args.rounds):
            for processes, workers in shapes:
                r = run_shape(processes, workers, kafka.url, pg.url, topic_raw, args.records)
                print(
                    f"{r['shape']}: {r['records']} records in {r['seconds']:.2f} s -> {r['records_per_s']:,.0f} "
                    f"records/s ({r['events']} events, {r['session_messages']} session_messages rows, "
                    f"{r['workers_with_events']} workers wrote events); load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
