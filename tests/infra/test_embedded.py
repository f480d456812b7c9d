"""The embedded servers start, answer real clients, and stop without leaving a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from infra.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, EmbeddedServerError
from infra.kafka_admin import ensure_topics, topic_plan

pytestmark = pytest.mark.integration


def _tree(pid: int) -> list[psutil.Process]:
    proc = psutil.Process(pid)
    return [proc, *proc.children(recursive=True)]


def _assert_gone(procs: list[psutil.Process]) -> None:
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive, f"still running: {alive}"


def test_kafka_produce_consume_and_stop(tmp_path: Path) -> None:
    with EmbeddedKafka(tmp_path / "kafka") as kafka:
        assert kafka.url == f"127.0.0.1:{kafka.port}"
        procs = _tree(kafka.pid)
        topic = f"t.{uuid.uuid4().hex[:8]}"
        ensure_topics(kafka.url, {topic: 2})
        meta = AdminClient({"bootstrap.servers": kafka.url}).list_topics(topic, timeout=5)
        assert len(meta.topics[topic].partitions) == 2

        producer = Producer({"bootstrap.servers": kafka.url, "acks": "all", "enable.idempotence": True})
        producer.produce(topic, key=b"k", value="你好".encode(), partition=1)
        assert producer.flush(10) == 0

        consumer = Consumer({"bootstrap.servers": kafka.url, "group.id": "t", "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 1, 0)])  # assign(): Tansu group joins are slow
        msg = None
        deadline = time.monotonic() + 10
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
        consumer.close()
        assert msg is not None and msg.error() is None
        assert msg.value().decode() == "你好"
    assert not kafka.running
    _assert_gone(procs)


def test_ensure_topics_is_idempotent_and_uses_the_plan(kafka_bootstrap: str, settings_factory) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = settings_factory(
        services=False,
        topic_raw=f"raw.{suffix}", topic_control=f"control.{suffix}", topic_commands=f"commands.{suffix}",
        topic_monitor=f"monitor.{suffix}", topic_dlq=f"dlq.{suffix}", raw_partitions=4,
    )  # fmt: skip
    plan = topic_plan(settings)
    assert plan[f"raw.{suffix}"] == 4 and plan[f"dlq.{suffix}"] == 3
    ensure_topics(kafka_bootstrap, plan)
    ensure_topics(kafka_bootstrap, plan)  # second call: nothing to create, no error
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=5).topics
    assert {name: len(topics[name].partitions) for name in plan} == plan


def test_postgres_creates_worktool_database_and_keeps_data_across_restart(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    with EmbeddedPostgres(data, durable=False) as pg:
        assert pg.url == f"postgresql://postgres:{pg.password}@127.0.0.1:{pg.port}/worktool"
        procs = _tree(pg.pid)
        assert len(procs) > 1  # postmaster and its background workers
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x text)")
            conn.execute("INSERT INTO t VALUES ('持久')")
            # An open connection must not block the stop (fast shutdown, not smart).
            with psycopg.connect(pg.url):
                pg.stop()
    _assert_gone(procs)

    with EmbeddedPostgres(data, durable=False) as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT x FROM t").fetchone() == ("持久",)


def test_redis_answers_and_stops(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        procs = _tree(server.pid)
        client = redis.Redis.from_url(server.url)
        client.set("k", "v", ex=10)
        assert client.get("k") == b"v"
        client.close()
    _assert_gone(procs)


def test_fixed_port_in_use_fails_with_log(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "a") as first:
        second = EmbeddedRedis(tmp_path / "b", port=first.port)
        with pytest.raises(EmbeddedServerError, match="already in use"):
            second.start()
        assert not second.running


def _owner_script(tmp_path: Path, then: str = "") -> str:
    """A Python program that starts Kafka and Redis, prints their pids, then runs `then`."""
    return textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from infra.embedded import EmbeddedKafka, EmbeddedRedis
        d = Path({str(tmp_path)!r})
        k = EmbeddedKafka(d / "k").start()
        r = EmbeddedRedis(d / "r").start()
        print(k.pid, r.pid, flush=True)
        {then}
        """
    )


def test_servers_are_stopped_when_the_owner_exits(tmp_path: Path) -> None:
    """The atexit hook: a script that starts servers and returns without stopping them leaves nothing."""
    script = _owner_script(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
        assert time.monotonic() < deadline, "servers outlived their owner"
        time.sleep(0.1)


def test_sigterm_to_owner_stops_servers(tmp_path: Path) -> None:
    """A supervisor that turns SIGTERM into a normal exit (as `worktool up` does) leaves nothing."""
    script = textwrap.dedent(
        f"""
        import signal, sys, time
        from pathlib import Path
        from infra.embedded import EmbeddedPostgres
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        pg = EmbeddedPostgres(Path({str(tmp_path)!r}) / "pg", durable=False).start()
        print(pg.pid, flush=True)
        time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pg_pid = int(owner.stdout.readline())
        procs = _tree(pg_pid)
        os.kill(owner.pid, signal.SIGTERM)
        assert owner.wait(20) == 0
        _assert_gone(procs)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_session_fixtures_point_at_live_servers(
    database_url: str, redis_url: str, unique_topics, settings_factory, new_database
) -> None:
    with psycopg.connect(database_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)  # fresh: no migrations
    other = new_database()
    assert other != database_url
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == other.rsplit("/", 1)[1]

    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.close()

    topics = unique_topics(raw_partitions=2)
    settings = settings_factory(database_url=database_url, **topics)
    assert settings.topic_raw.startswith("worktool.raw.") and settings.raw_partitions == 2
    assert settings.redis_url == redis_url and settings.database_url == database_url
    listed = (
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}).list_topics(timeout=5).topics
    )
    assert len(listed[settings.topic_raw].partitions) == 2
    assert len(listed[settings.topic_monitor].partitions) == 3


def test_servers_die_with_a_killed_owner(tmp_path: Path) -> None:
    """Even SIGKILL of the owner (no atexit, no handler) leaves no orphan: the parent-death signal."""
    script = _owner_script(tmp_path, then="time.sleep(60)")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        procs = [psutil.Process(int(p)) for p in owner.stdout.readline().split()]
        assert len(procs) == 2
        owner.kill()
        owner.wait(5)
        _assert_gone(procs)
    finally:
        if owner.poll() is None:
            owner.kill()


def test_settings_factory_gives_each_test_one_migrated_database(settings_factory, database_url: str) -> None:
    first, second = settings_factory(), settings_factory(shards=4)
    assert first.database_url == second.database_url != database_url
    assert second.shards == 4 and first.data_dir == second.data_dir
    with psycopg.connect(first.database_url) as conn:
        assert conn.execute("SELECT to_regclass('session_messages')").fetchone()[0] == "session_messages"
    with pytest.raises(TypeError, match="unknown Settings fields"):
        settings_factory(no_such_field=1)
