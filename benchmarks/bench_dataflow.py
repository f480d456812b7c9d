"""Dataflow throughput (not a test).

    .venv/bin/python benchmarks/bench_dataflow.py [--records 100000] [--kafka] [--texts synthetic]

`--texts`: `synthetic` (the 13 texts below), `labelled` (the 728 distinct texts of tests/data's
labelled sets), `unique` (the labelled texts, each made distinct with a number: no text repeats, so no
cache of the classifier can help). Figures: wall-clock records/s and records per CPU-second of the
process (steadier on a shared box).

1. replay: the full flow (parse, shard, dedup, classify with the configured classifier, sessions) over a
   synthetic archive, in-process, events written to a counting sink.
2. --kafka: the live wiring end to end on the embedded broker and database: records pre-loaded on
   worktool.raw, KafkaSource (tail=False) -> flow -> worktool.monitor + Postgres, timed first to last.
"""

from __future__ import annotations

import argparse
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
    def __init__(self, box):
        self.box = box

    def write_batch(self, items):
        self.box[0] += len(items)
        self.box[1] = time.perf_counter()


class CountingSink(DynamicSink):
    def __init__(self):
        self.box = [0, 0.0]

    def build(self, *_):
        return _Count(self.box)


def bench_replay(n: int, texts: str = "synthetic") -> None:
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
        f"flow {done - loaded:.2f} s -> {n / (done - loaded):,.0f} records/s, "
        f"{n / cpu:,.0f} records per CPU-second, {sink.box[0]} events"
    )


def bench_kafka(n: int) -> None:
    import psycopg
    from bytewax.connectors.kafka import KafkaSource
    from confluent_kafka import Producer

    from infra.embedded import EmbeddedKafka, EmbeddedPostgres
    from infra.kafka_admin import ensure_topics
    from infra.migrate import apply_up
    from sinks.kafka import ModelKafkaSink
    from sinks.postgres import PostgresEventSink

    with (
        tempfile.TemporaryDirectory() as d,
        EmbeddedKafka(Path(d) / "k") as kafka,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        settings = Settings(kafka_bootstrap_servers=kafka.url, database_url=pg.url)
        ensure_topics(kafka.url, {settings.topic_raw: 6, settings.topic_monitor: 3})
        apply_up(pg.url)
        p = Producer(
            {"bootstrap.servers": kafka.url, "linger.ms": 5, "acks": "all", "enable.idempotence": True}
        )
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
        source = KafkaSource([kafka.url], [settings.topic_raw], tail=False, batch_size=1000)
        count = CountingSink()
        sinks = FlowSinks(
            events=[ModelKafkaSink(kafka.url, settings.topic_monitor), PostgresEventSink(pg.url), count]
        )
        started = time.perf_counter()
        run_main(
            build_flow(
                source, sinks, classifier, FlowOptions.from_settings(settings, config), extra_events=extra
            )
        )
        elapsed = time.perf_counter() - started
        with psycopg.connect(pg.url) as conn:
            rows = conn.execute("select count(*) from session_messages").fetchone()[0]
    print(
        f"kafka->flow->monitor+postgres: {n} records in {elapsed:.2f} s -> {n / elapsed:,.0f} records/s "
        f"({count.box[0]} events, {rows} session_messages rows)"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--kafka", action="store_true")
    ap.add_argument("--texts", choices=("synthetic", "labelled", "unique"), default="synthetic")
    args = ap.parse_args()
    bench_replay(args.records, args.texts)
    if args.kafka:
        bench_kafka(args.records)
