"""Produce-to-consume latency of the embedded broker with a bare librdkafka consumer (not a test).

    .venv/bin/python benchmarks/bench_broker_fetch.py ['{"fetch.wait.max.ms": 10}'] [--cold] [--smoke]

One producer sends a record every 50 ms to a 6-partition topic; one consumer, assigned to 6 + 3
partitions as the dataflow is (raw and control topics), polls as bytewax does (consume with a 1-ms
timeout, 25 ms pause when idle). Prints the produce-to-consume latency quantiles, to tell the broker's
fetch path from the dataflow's own time. The argument adds consumer settings (JSON); `--cold` starts
producing before the producer and the consumer are ready (what an earlier version did by mistake).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.embedded import EmbeddedKafka  # noqa: E402
from infra.kafka_admin import ensure_topics  # noqa: E402


def main() -> None:
    args = [a for a in sys.argv[1:] if a not in ("--cold", "--smoke")]
    records = 20 if "--smoke" in sys.argv else 300  # --smoke: a tiny run that only shows it works
    extra = json.loads(args[0]) if args else {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka(Path(tmp) / "kafka") as kafka:
        ensure_topics(kafka.url, {"raw": 6, "control": 3})
        config = {"bootstrap.servers": kafka.url, "group.id": "bench", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 10, "session.timeout.ms": 6000, **extra}  # fmt: skip
        consumer = Consumer(config)
        parts = [TopicPartition("raw", i, OFFSET_BEGINNING) for i in range(6)]
        consumer.assign(parts + [TopicPartition("control", i, OFFSET_BEGINNING) for i in range(3)])
        producer = Producer(
            {"bootstrap.servers": kafka.url, "enable.idempotence": True, "acks": "all", "linger.ms": 2}
        )
        if "--cold" not in sys.argv:
            # Both clients ready before the first record: an idempotent producer's first record waits
            # ~500 ms for its producer id, and the consumer's assignment takes effect on its first polls.
            # (Without this, that start-up was once read as a tail of the broker's fetch path.)
            producer.list_topics(timeout=10)
            consumer.consume(10, 1.0)
        sent: dict[str, float] = {}
        latencies: list[float] = []

        def produce() -> None:
            for i in range(records):
                sent[str(i)] = time.perf_counter()
                producer.produce("raw", str(i).encode(), key=str(i).encode())
                producer.poll(0)
                time.sleep(0.05)
            producer.flush(5)

        threading.Thread(target=produce, daemon=True).start()
        deadline = time.time() + 30
        while time.time() < deadline and len(latencies) < records:
            batch = consumer.consume(1000, 0.001)
            latencies += [
                (time.perf_counter() - sent[m.value().decode()]) * 1000 for m in batch if m.error() is None
            ]
            if not batch:
                time.sleep(0.025)
        consumer.close()
        q = statistics.quantiles(latencies, n=100)
        print(f"{len(latencies)} records, produce -> consume: p50 {q[49]:.1f} ms, p95 {q[94]:.1f} ms, "
              f"p99 {q[98]:.1f} ms, max {max(latencies):.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
