"""Dataflow throughput (not a test).

    .venv/bin/python benchmarks/bench_dataflow.py [--records 100000] [--kafka] [--profile 30] [--smoke]

1. replay: the full flow (parse, shard, dedup, classify with the configured classifier, sessions) over a
   synthetic archive, in-process, events written to a counting sink.
2. --kafka: the live wiring end to end on the embedded broker and database: records pre-loaded on
   worktool.raw, the live flow's Kafka source (tail=False) and sinks (dataflows/main.py) -> flow ->
   worktool.monitor + Postgres, timed first to last; then the ratio live / replay of the same run.
--smoke: 500 records, for CI (tests/e2e/test_latency_benchmark.py runs it); the figures mean nothing.
"""

from __future__ import annotations

import argparse
import cProfile
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def synthetic(n: int, groups: int = 200) -> list[bytes]:
    rnd = random.Random(7)
    t = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
    out = []
    while len(out) < n:
        t += timedelta(milliseconds=rnd.randint(50, 400))
        g = rnd.randrange(groups)
        body = {
            "spoken": rnd.choice(TEXTS),
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


def bench_replay(n: int) -> float:
    settings = Settings()
    config = BusinessConfig()
    classifier = build_classifier(settings, config)
    extra = call_log_events(classifier)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "archive.jsonl"
        path.write_bytes(b"\n".join(synthetic(n)) + b"\n")
        started = time.perf_counter()
        source = ArchiveSource(path, timedelta(seconds=settings.replay_tick_interval_s))
        loaded = time.perf_counter()
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
    print(
        f"replay: {n} records ({type(classifier).__name__}): load+sort {loaded - started:.2f} s, "
        f"flow {done - loaded:.2f} s -> {n / (done - loaded):,.0f} records/s, {sink.box[0]} events"
    )
    FIGURES["replay"] = {"records_per_s": n / (done - loaded), "events": sink.box[0], "kinds": sink.kinds}
    return n / (done - loaded)


def bench_kafka(n: int, profile: int = 0) -> float:
    """The live wiring of dataflows/main.py (its Kafka source and sinks, minus the Redis heartbeat) on
    the embedded broker and database, over `n` records pre-loaded on worktool.raw."""
    import psycopg

    from dataflows.main import kafka_source, live_sinks
    from infra import kafka_clients
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
        p = kafka_clients.producer("loader", kafka.url)
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
        source = kafka_source(kafka.url, [settings.topic_raw], tail=False)
        count = CountingSink()
        live = live_sinks(settings)
        sinks = FlowSinks(events=[*live.events, count], dlq=live.dlq, commands=live.commands)
        flow = build_flow(
            source, sinks, classifier, FlowOptions.from_settings(settings, config), extra_events=extra
        )
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        run_main(flow)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("select count(*) from session_messages").fetchone()[0]
    rate = n / elapsed
    FIGURES["live"] = {"records_per_s": rate, "events": count.box[0], "kinds": count.kinds, "rows": rows}
    print(
        f"kafka->flow->monitor+postgres: {n} records in {elapsed:.2f} s -> {rate:,.0f} records/s "
        f"({count.box[0]} events, {rows} session_messages rows)"
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
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="--kafka: print the N costliest functions"
    )
    args = ap.parse_args()
    n = 500 if args.smoke else args.records
    replay = bench_replay(n)
    if args.kafka:
        live = bench_kafka(n, args.profile)
        print(f"live / replay: {live / replay:.0%} (load average {os.getloadavg()[0]:.2f})")
    if args.json:
        args.json.write_bytes(orjson.dumps({**FIGURES, "load_average": os.getloadavg()[0]}))
