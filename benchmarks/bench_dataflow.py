"""Dataflow throughput (not a test).

    .venv/bin/python benchmarks/bench_dataflow.py [--records 100000] [--kafka] [--profile 30] [--smoke] [--texts synthetic]

`--texts`: `synthetic` (the 13 texts below), `labelled` (the 728 distinct texts of tests/data's
labelled sets), `unique` (the labelled texts, each made distinct with a number: no text repeats, so no
cache of the classifier can help). Figures: wall-clock records/s and records per CPU-second of the
process (steadier on a shared box).

1. replay: the full flow (parse, shard, dedup, classify with the configured classifier, sessions) over a
   synthetic archive, in-process, events written to a counting sink.
2. --kafka: the live wiring end to end on the embedded broker and database: records pre-loaded on
   worktool.raw, the live flow's Kafka source (tail=False) and sinks (dataflows/main.py) -> flow ->
   worktool.monitor + Postgres, timed first to last; then the ratio live / replay of the same run.
--waiting-sinks: the worker waits for each batch's acknowledgements (the live sinks before
sinks/overlapped.py), for a comparison in the same run.
--repo DIR: the code of another checkout (e.g. before a change) under this benchmark, same venv.
--python-gc: Python's collector thresholds instead of the dataflow processes' (`WORKTOOL_GC_THRESHOLD`,
dataflows/collector.py, applied by dataflows/runner.py and the replay): the live path allocates more
(the sinks' rows, the producer's records), so with Python's thresholds it paid more of its time to the
collector than the replay did, which no deployed flow does.
--smoke: 500 records, for CI (tests/e2e/test_latency_benchmark.py runs it); the figures mean nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

# --repo DIR: measure another checkout's code (e.g. the code before a change) with this benchmark.
_REPO = Path(sys.argv[sys.argv.index("--repo") + 1]) if "--repo" in sys.argv else Path(__file__).parents[1]
sys.path.insert(0, str(_REPO.resolve()))

from classifiers import build_classifier, call_log_events  # noqa: E402
from dataflows.flow import FlowOptions, FlowSinks, build_flow  # noqa: E402
from dataflows.sources import ArchiveSource  # noqa: E402
from worktool.config import BusinessConfig  # noqa: E402
from worktool.models import raw_record_key  # noqa: E402
from worktool.settings import Settings  # noqa: E402

TEXTS = [
    "你好",
    "佣金什么时候结算？能日结吗",
    "我的视频号发不了作品，需要扫码认证吗",
    "好的收到",
    "在的",
    "我要投诉你们，说好的一天300到500呢",
    "我把橱窗里的商品删了",
    "今天的视频已经发了",
    "麻烦看一下我的账号",
    "马上给我配合扫码！！！别废话",
    "[暂停回复]",
    "请完成出镜人身份验证",
    "现在没时间，不想弄了",
]


FIGURES: dict[str, dict] = {}


def labelled_texts() -> list[str]:
    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    texts: dict[str, None] = {}
    for name in ("labelled_messages.jsonl", "blind_messages.jsonl", "blind2_messages.jsonl"):
        for line in (data / name).read_text("utf-8").splitlines():
            text = orjson.loads(line).get("text") if line.strip() else None
            if text:
                texts[text] = None
    return list(texts)


def synthetic(n: int, groups: int = 200, texts: str = "synthetic") -> list[bytes]:
    rnd = random.Random(7)
    pool = TEXTS if texts == "synthetic" else labelled_texts()
    t = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    out = []
    while len(out) < n:
        t += timedelta(milliseconds=rnd.randint(50, 400))
        g = rnd.randrange(groups)
        body = {
            "spoken": rnd.choice(pool) + (f" {len(out)}" if texts == "unique" else ""),
            "rawSpoken": "",
            "receivedName": f"用户{rnd.randrange(2000)}",
            "groupName": f"视频号运营{g}群",
            "groupRemark": f"{g}群",
            "roomType": 1,
            "atMe": False,
            "textType": 1,
        }
        body["rawSpoken"] = body["spoken"]
        for robot in ("wt_monitor", "wt_day")[: rnd.choice((1, 2))]:  # some reported twice
            out.append(
                orjson.dumps(
                    {
                        "kind": "message",
                        "robot_id": robot,
                        "received_at": t.isoformat().replace("+00:00", "Z"),
                        "body": body,
                    }
                )
            )
    return out[:n]


class _Count(StatelessSinkPartition):
    def __init__(self, box, kinds):
        self.box = box
        self.kinds = kinds

    def write_batch(self, items):
        self.box[0] += len(items)
        self.box[1] = time.perf_counter()
        for item in items:
            self.kinds[item.event] = self.kinds.get(item.event, 0) + 1


class CountingSink(DynamicSink):
    def __init__(self):
        self.box = [0, 0.0]
        self.kinds: dict[str, int] = {}

    def build(self, *_):
        return _Count(self.box, self.kinds)


def _cpu_of(pids: list[int | None]) -> float:
    """User + system CPU seconds of these processes and their children (the embedded servers)."""
    import psutil

    total = 0.0
    for pid in pids:
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def bench_replay(n: int, texts: str = "synthetic") -> float:
    settings = Settings()
    config = BusinessConfig()
    classifier = build_classifier(settings, config)
    extra = call_log_events(classifier)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "archive.jsonl"
        path.write_bytes(b"\n".join(synthetic(n, texts=texts)) + b"\n")
        started = time.perf_counter()
        source = ArchiveSource(path, timedelta(seconds=settings.replay_tick_interval_s))
        loaded = time.perf_counter()
        cpu = time.process_time()
        sink = CountingSink()
        run_main(
            build_flow(
                source,
                FlowSinks(events=[sink]),
                classifier,
                FlowOptions.from_settings(settings, config),
                extra_events=extra,
            )
        )
        done = time.perf_counter()
        cpu = time.process_time() - cpu
    print(
        f"replay: {n} records ({type(classifier).__name__}, {texts} texts): load+sort {loaded - started:.2f} s, "
        f"flow {done - loaded:.2f} s -> {n / (done - loaded):,.0f} records/s, {sink.box[0]} events; "
        f"CPU {cpu:.2f} s -> {n / cpu:,.0f} records per CPU-second"
    )
    FIGURES["replay"] = {
        "records_per_s": n / (done - loaded),
        "records_per_cpu_s": n / cpu,
        "events": sink.box[0],
        "kinds": sink.kinds,
    }
    return n / (done - loaded)


def _loader(bootstrap: str):
    try:
        from infra import kafka_clients
    except ImportError:  # a checkout before the Kafka client factory
        from confluent_kafka import Producer

        return Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": True}
        )
    return kafka_clients.producer("loader", bootstrap)


def _live_wiring(
    settings: Settings, concurrent: bool, source_config: dict[str, str], overlapped: bool = True
):
    """The live flow's Kafka source and sinks (dataflows/main.py), or for a checkout before
    `kafka_source`/`live_sinks` existed, the wiring this benchmark used then."""
    try:
        from dataflows.main import kafka_source, live_sinks
    except ImportError:
        from bytewax.connectors.kafka import KafkaSource

        from sinks.kafka import ModelKafkaSink
        from sinks.postgres import PostgresEventSink

        bootstrap = settings.kafka_bootstrap_servers
        # The live flow's consumer settings of then (dataflows/main.py before the client factory).
        config = {"session.timeout.ms": "6000", "fetch.wait.max.ms": "10", "auto.offset.reset": "error"}
        source = KafkaSource(
            [bootstrap],
            [settings.topic_raw],
            tail=False,
            batch_size=1000,
            add_config={**config, **source_config},
        )
        events = [ModelKafkaSink(bootstrap, settings.topic_monitor), PostgresEventSink(settings.database_url)]
        return source, FlowSinks(events=events)
    source = kafka_source(settings.kafka_bootstrap_servers, [settings.topic_raw], tail=False, **source_config)
    try:
        return source, live_sinks(settings, concurrent=concurrent, overlapped=overlapped)
    except TypeError:  # a checkout before the overlapped sink
        return source, live_sinks(settings, concurrent=concurrent)


def bench_kafka(
    n: int,
    profile: int = 0,
    concurrent: bool = True,
    source_config: dict[str, str] | None = None,
    overlapped: bool = True,
) -> float:
    """The live wiring of dataflows/main.py (its Kafka source and sinks, minus the Redis heartbeat) on
    the embedded broker and database, over `n` records pre-loaded on worktool.raw."""
    import psycopg

    from infra.embedded import EmbeddedKafka, EmbeddedPostgres
    from infra.kafka_admin import ensure_topics_for
    from infra.migrate import apply_up

    with (
        tempfile.TemporaryDirectory() as d,
        EmbeddedKafka(Path(d) / "k") as kafka,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        settings = Settings(kafka_bootstrap_servers=kafka.url, database_url=pg.url)
        ensure_topics_for(settings)
        apply_up(pg.url)
        p = _loader(kafka.url)
        for value in synthetic(n):
            rec = orjson.loads(value)
            while True:
                try:
                    p.produce(
                        settings.topic_raw,
                        value,
                        raw_record_key("message", rec["robot_id"], rec["body"]).encode(),
                    )
                    break
                except BufferError:
                    p.poll(0.1)
        p.flush(60)
        config = BusinessConfig()
        classifier = build_classifier(settings, config)
        extra = call_log_events(classifier)
        source, live = _live_wiring(settings, concurrent, source_config or {}, overlapped)
        count = CountingSink()
        sinks = FlowSinks(events=[*live.events, count], dlq=live.dlq, commands=live.commands)
        flow = build_flow(
            source, sinks, classifier, FlowOptions.from_settings(settings, config), extra_events=extra
        )
        profiler = cProfile.Profile() if profile else None
        servers = [kafka.pid, pg.pid]
        started, cpu, servers_cpu = time.perf_counter(), time.process_time(), _cpu_of(servers)
        if profiler:
            profiler.enable()
        run_main(flow)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        cpu, servers_cpu = time.process_time() - cpu, _cpu_of(servers) - servers_cpu
        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("select count(*) from session_messages").fetchone()[0]
    rate = n / elapsed
    FIGURES["live"] = {
        "records_per_s": rate,
        "records_per_cpu_s": n / cpu,
        "servers_cpu_s": servers_cpu,
        "events": count.box[0],
        "kinds": count.kinds,
        "rows": rows,
    }
    print(
        f"kafka->flow->monitor+postgres: {n} records in {elapsed:.2f} s -> {rate:,.0f} records/s "
        f"({count.box[0]} events, {rows} session_messages rows); CPU {cpu:.2f} s -> "
        f"{n / cpu:,.0f} records per CPU-second, + broker and database {servers_cpu:.2f} s"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(profile)
    return rate


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--kafka", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a tiny run (500 records) that only shows it works")
    ap.add_argument("--json", type=Path, help="write the figures to this file")
    ap.add_argument("--source-config", type=json.loads, default={}, help="extra consumer settings (JSON)")
    ap.add_argument("--repo", type=Path, help="measure the code of another checkout (same venv)")
    ap.add_argument("--sequential-sinks", action="store_true", help="monitor topic, then Postgres")
    ap.add_argument(
        "--waiting-sinks", action="store_true", help="the worker waits for each batch's acknowledgements"
    )
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="--kafka: print the N costliest functions"
    )
    ap.add_argument("--texts", choices=("synthetic", "labelled", "unique"), default="synthetic")
    ap.add_argument(
        "--python-gc",
        action="store_true",
        help="keep Python's collector thresholds (figures before 2026-12-03 17:30)",
    )
    args = ap.parse_args()
    if not args.python_gc:  # the collector policy of every dataflow process, live and replay alike
        from dataflows.collector import tune_collector

        print(f"gc thresholds {tune_collector(Settings().gc_threshold)} (dataflows/collector.py)")
    n = 500 if args.smoke else args.records
    replay = bench_replay(n, args.texts)
    if args.kafka:
        live = bench_kafka(
            n,
            args.profile,
            concurrent=not args.sequential_sinks,
            source_config=args.source_config,
            overlapped=not args.waiting_sinks,
        )
        per_cpu = FIGURES["live"]["records_per_cpu_s"] / FIGURES["replay"]["records_per_cpu_s"]
        print(
            f"live / replay: {live / replay:.0%} wall clock, {per_cpu:.0%} per CPU-second of the flow's "
            f"process (load average {os.getloadavg()[0]:.2f})"
        )
    if args.json:
        args.json.write_bytes(orjson.dumps({**FIGURES, "load_average": os.getloadavg()[0]}))
