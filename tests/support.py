"""Helpers shared by the tests in every folder: paths, running flows in-process, running the real
processes, producing to and consuming from the broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import cluster_main, run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from worktool.settings import Settings

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = TESTS / "data"  # labelled/blind message sets and rosters


def chaos_scale() -> int:
    """How much harder a `chaos`-marked test pushes: 1 in CI, larger in `worktool chaos` (more records,
    more rounds, longer outages). Tests multiply their counts by it."""
    return max(1, int(os.environ.get("WORKTOOL_CHAOS_SCALE", "1")))


# The message callback of docs/platform.md §3: an owner @-ing the day robot in a group.
GROUP_MESSAGE = {
    "spoken": "我的视频号发不了作品，需要扫码认证吗",
    "rawSpoken": "@运营助理小A 我的视频号发不了作品，需要扫码认证吗",
    "receivedName": "用户甲-138****0000",
    "groupName": "视频号运营A群",
    "groupRemark": "A群",
    "roomType": 1,
    "atMe": "true",
    "textType": 1,
}


def answers(url: str, status: int = 200) -> bool:
    """True once `GET url` answers `status` (for wait_until)."""
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == status
    except httpx.HTTPError:
        return False


# Variables of ours in the test runner's environment that must not leak into a child with other settings.
OWN_ENV_PREFIXES = ("WORKTOOL_", "KAFKA_", "DATABASE_", "REDIS_")


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment that makes a child process see exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV_PREFIXES)}
    return {**env, **settings.as_env(), **extra}


def spawn(args: list[str], settings: Settings, log: Path, **extra_env: str) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        args, env=env_for(settings, **extra_env), cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def spawn_up(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`worktool up` as the user runs it, with exactly `env`, output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "commands.cli", "up"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def up_env(port: int, data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a `worktool up` on the example business file, a free port and its own data
    dir, with none of the test runner's own settings; `overrides` are more WORKTOOL_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV_PREFIXES)}
    return env | {
        "WORKTOOL_HTTP_PORT": str(port),
        "WORKTOOL_DATA_DIR": str(data_dir),
        "WORKTOOL_CONFIG": str(REPO / "config" / "business.example.yaml"),
        **overrides,
    }


@dataclass
class RunningStack:
    """A healthy `worktool up` (see `running_up`)."""

    up: subprocess.Popen[bytes]
    base: str
    data_dir: Path
    log: Path

    @property
    def info(self) -> dict[str, Any]:
        return orjson.loads((self.data_dir / "stack.json").read_bytes())

    def pid(self, name: str) -> int:
        return self.info["processes"][name]["pid"]

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@contextlib.contextmanager
def running_up(
    env: dict[str, str], log: Path, ready_s: float = 120, clean_exit: bool = True
) -> Iterator[RunningStack]:
    """`worktool up` with `env` (see `up_env`), once its /healthz answers 200. At the end: SIGTERM, a
    clean exit asserted (unless `clean_exit` is False), and whatever is left of its process tree killed."""
    proc = spawn_up(env, log)
    running = RunningStack(
        proc, f"http://127.0.0.1:{env['WORKTOOL_HTTP_PORT']}", Path(env["WORKTOOL_DATA_DIR"]), log
    )
    try:
        deadline = time.monotonic() + ready_s
        while not answers(f"{running.base}/healthz"):
            assert proc.poll() is None, running.tail()
            assert time.monotonic() < deadline, running.tail()
            time.sleep(0.3)
        yield running
    finally:
        tree: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(25)
            assert not clean_exit or code == 0, running.tail()
        finally:
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()


def spawn_dataflow(settings: Settings, log: Path) -> subprocess.Popen:
    return spawn([sys.executable, "-m", "commands.cli", "dataflow"], settings, log)


def wait_until(check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or check} (last: {last!r})")


def produce(bootstrap: str, topic: str, records: list[tuple[str, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    for key, value in records:
        p.produce(topic, value, key.encode())
    assert p.flush(30) == 0


def consume_all(bootstrap: str, topic: str, idle_s: float = 1.5) -> list[dict]:
    """Every record on `topic` (all partitions), decoded as JSON; stops after `idle_s` of silence
    once every partition reported EOF."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "tests", "enable.partition.eof": True})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        out, eof, last = [], set(), time.monotonic()
        while time.monotonic() - last < idle_s or len(eof) < len(parts):
            if time.monotonic() - last > 20:
                break
            for m in c.consume(500, 0.2):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        eof.add(m.partition())
                    continue
                last = time.monotonic()
                out.append({"partition": m.partition(), "key": m.key(), "value": orjson.loads(m.value())})
        return out
    finally:
        c.close()


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- running a flow in this process (the `entry_point` fixture) ---


@dataclass(frozen=True)
class EntryPoint:
    """One way of running a flow in this process (see `entry_point`)."""

    name: str
    workers: int

    def __call__(
        self,
        flow: Dataflow,
        epoch_interval: timedelta | None = None,
        recovery_config: RecoveryConfig | None = None,
    ) -> None:
        if self.name == "run_main":
            run_main(flow, epoch_interval=epoch_interval, recovery_config=recovery_config)
        else:
            cluster_main(
                flow,
                [],
                0,
                epoch_interval=epoch_interval,
                recovery_config=recovery_config,
                worker_count_per_proc=self.workers,
            )


ENTRY_POINTS = {
    "run_main": EntryPoint("run_main", 1),
    "cluster-1": EntryPoint("cluster-1", 1),
    "cluster-2": EntryPoint("cluster-2", 2),
}
SINGLE_WORKER = [name for name, ep in ENTRY_POINTS.items() if ep.workers == 1]
