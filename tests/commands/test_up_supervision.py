"""`worktool up` supervision: restarts with capped back-off, a gateway that never stops because another
part died, per-child environments; and, against the real stack, kill -9 of the dataflow, PostgreSQL,
the broker and the gateway while webhooks keep coming."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest
import redis as redis_client

from commands import up
from commands.up import BACKOFF_MAX_S, Stack, backoff_delay, describe_exit
from infra.embedded import free_port
from sinks.heartbeat import process_heartbeat_key
from tests.support import GROUP_MESSAGE, RunningStack, answers, consume_all, running_up, up_env, wait_until
from worktool.settings import Settings

REPO = Path(__file__).resolve().parents[2]
ROBOT, TOKEN = "wt_day_01", "chaos-token-42"
LLM_KEY = "llm-key-only-for-the-dataflow"
SECRETS_KEY = "c2VjcmV0cy1rZXktZm9yLXN1cGVydmlzaW9uLXRlc3Q="
METRICS_TOKEN = "metrics-token-of-every-part"


# --- the supervisor's logic, with stand-in children and a stand-in clock -------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class FakeChild:
    """A child that stays dead for `deaths` more starts, then keeps running."""

    deaths: int = 0
    running: bool = True
    returncode: int | None = None
    pid: int = 4242
    starts: int = 0
    log: list[str] = field(default_factory=list)

    def die(self, code: int = -9) -> None:
        self.running, self.returncode = False, code

    # ChildProcess
    def start(self) -> FakeChild:
        self.starts += 1
        if self.deaths > 0:
            self.deaths -= 1
            self.die(1)
        else:
            self.running, self.returncode = True, None
        return self

    def kill_leftovers(self) -> None:
        self.log.append("kill_leftovers")

    def stop(self) -> None:
        self.running = False

    # EmbeddedServer
    def restart(self) -> FakeChild:
        return self.start()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(up.time, "monotonic", fake.monotonic)
    return fake


def fake_stack(tmp_path: Path, **children: FakeChild) -> Stack:
    stack = Stack(Settings(data_dir=tmp_path / "data"))
    stack.data_dir.mkdir(parents=True)
    for name, child in children.items():
        target = stack.servers if name in up.SERVERS else stack.apps
        target[name] = child  # type: ignore[assignment]
        stack.states[name] = up.ChildState(name, started_at=up.time.monotonic())
    return stack


def run_until_restarted(stack: Stack, clock: FakeClock, name: str) -> float:
    """Advance the clock in small steps until `name` is started again; returns the wait."""
    child = stack._children()[name]
    before, waited = child.starts, 0.0  # type: ignore[union-attr]
    while child.starts == before:  # type: ignore[union-attr]
        stack.supervise_once()
        clock.now += 0.1
        waited += 0.1
        assert waited < 120, f"{name} never restarted"
    return waited


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff_delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(1000) == BACKOFF_MAX_S
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "exited with code 3"


def test_a_crash_loop_backs_off_but_is_never_given_up(tmp_path: Path, clock: FakeClock) -> None:
    dataflow = FakeChild(deaths=12)
    stack = fake_stack(tmp_path, dataflow=dataflow, gateway=FakeChild())
    dataflow.die(1)
    waits = [run_until_restarted(stack, clock, "dataflow") for _ in range(13)]
    # Each wait is the back-off of that failure (to the clock's step): growing, capped, never ending.
    assert [round(w * 2) / 2 for w in waits[:8]] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert all(abs(w - BACKOFF_MAX_S) < 0.3 for w in waits[6:])
    # Every start counts as a restart; the 13th stayed up.
    assert dataflow.running and stack.states["dataflow"].restarts == 13
    info = json.loads(stack.info_path.read_text())
    assert info["processes"]["dataflow"]["state"] == "running"
    assert info["processes"]["dataflow"]["last_exit"] == "exited with code 1"

    # A minute of running resets the back-off: the next death restarts quickly again.
    clock.now += up.STABLE_AFTER_S
    stack.supervise_once()
    dataflow.die(-9)
    assert run_until_restarted(stack, clock, "dataflow") < 1.0


def test_the_gateway_is_restarted_while_a_server_is_down_and_the_dataflow_waits_for_it(
    tmp_path: Path, clock: FakeClock
) -> None:
    postgres = FakeChild(deaths=3)
    dataflow, gateway = FakeChild(), FakeChild()
    stack = fake_stack(tmp_path, postgres=postgres, dataflow=dataflow, gateway=gateway)
    postgres.die(-9)
    dataflow.die(1)
    gateway.die(-9)
    stack.supervise_once()
    info = json.loads(stack.info_path.read_text())
    assert {n: p["state"] for n, p in info["processes"].items()} == {
        "postgres": "restarting",
        "dataflow": "restarting",
        "gateway": "restarting",
    }
    assert info["processes"]["postgres"]["last_exit"] == "killed by SIGKILL"
    assert "retry_at" in info["processes"]["postgres"]

    for _ in range(10):  # 1 s
        clock.now += 0.1
        stack.supervise_once()
    assert gateway.running and gateway.log == ["kill_leftovers"]
    assert not postgres.running and dataflow.starts == 0  # postgres still failing: the dataflow waits
    while not postgres.running:
        clock.now += 0.1
        stack.supervise_once()
    clock.now += 0.1
    stack.supervise_once()
    assert dataflow.running and dataflow.starts == 1


def test_a_restarted_embedded_broker_gets_its_topics_and_the_dataflow_keeps_running(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataflow notices the recreated topics by itself and keeps its state (so the loss detector
    can report what the dead broker lost): no restart, no deleted snapshot."""
    kafka, dataflow = FakeChild(), FakeChild().start()
    stack = fake_stack(tmp_path, kafka=kafka, dataflow=dataflow)
    created: list[list[str]] = []
    monkeypatch.setattr(up, "ensure_topics_for", lambda settings: created.append(settings.all_topics))
    snapshot = stack.settings.recovery_dir.resolve() / "part-0.sqlite3"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"state and offsets (with topic ids)")

    kafka.die(-9)
    run_until_restarted(stack, clock, "kafka")
    assert created and stack.settings.topic_raw in created[0]
    assert snapshot.exists()
    assert dataflow.running and dataflow.starts == 1


def test_children_get_only_their_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKTOOL_LLM_API_KEY", LLM_KEY)
    monkeypatch.setenv("WORKTOOL_WEBHOOK_TOKENS", json.dumps({ROBOT: TOKEN}))
    monkeypatch.setenv("WORKTOOL_METRICS_TOKEN", METRICS_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "unrelated")
    monkeypatch.setenv("WORKTOOL_API_TOKEN", "console-api-token")  # the console API's, nobody else's
    monkeypatch.setenv(
        "WORKTOOL_SECRETS_KEY", SECRETS_KEY
    )  # the console seals LLM keys, the dataflow opens them
    monkeypatch.setenv("WORKTOOL_CONFIG", "/somewhere/business.yaml")
    stack = Stack(Settings(data_dir=tmp_path / "data"))
    gateway, dataflow = stack.child_env("gateway"), stack.child_env("dataflow")
    assert (
        dataflow["WORKTOOL_SECRETS_KEY"] == stack.child_env("console")["WORKTOOL_SECRETS_KEY"] == SECRETS_KEY
    )
    assert "WORKTOOL_SECRETS_KEY" not in gateway and "WORKTOOL_SECRETS_KEY" not in stack.child_env(
        "dispatcher"
    )
    assert "WORKTOOL_LLM_API_KEY" not in gateway and dataflow["WORKTOOL_LLM_API_KEY"] == LLM_KEY
    # Every part serving /metrics checks the metrics token.
    assert gateway["WORKTOOL_METRICS_TOKEN"] == dataflow["WORKTOOL_METRICS_TOKEN"] == METRICS_TOKEN
    assert "WORKTOOL_WEBHOOK_TOKENS" in gateway and "WORKTOOL_WEBHOOK_TOKENS" not in dataflow
    assert "AWS_SECRET_ACCESS_KEY" not in gateway and "AWS_SECRET_ACCESS_KEY" not in dataflow
    assert "WORKTOOL_API_TOKEN" not in gateway and "WORKTOOL_API_TOKEN" not in dataflow
    assert gateway["WORKTOOL_CONFIG"] == dataflow["WORKTOOL_CONFIG"] == "/somewhere/business.yaml"
    assert gateway["WORKTOOL_STACK_INFO"] == str(stack.info_path)
    assert dataflow["WORKTOOL_DATAFLOW_METRICS_HOST"] == "127.0.0.1"


# --- the real stack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp = tmp_path_factory.mktemp("up")
    env = up_env(
        free_port(),
        tmp / "data",
        WORKTOOL_LLM_API_KEY=LLM_KEY,  # no provider configured: the rules classify, the key only travels
        WORKTOOL_WEBHOOK_TOKENS=json.dumps({ROBOT: TOKEN}),
        WORKTOOL_METRICS_TOKEN=METRICS_TOKEN,
        # The dataflow as a local cluster of two processes: what holds here holds for a cluster too.
        WORKTOOL_DATAFLOW_PROCESSES="2",
    )
    with running_up(env, tmp / "up.log") as running:
        yield running


class Poster:
    """Posts uniquely numbered message callbacks from a thread, as WorkTool would, and remembers every
    answer (an exception is a refused webhook)."""

    def __init__(self, base: str, prefix: str, interval_s: float = 0.03, groups: int = 1):
        self.base, self.prefix, self.interval_s, self.groups = base, prefix, interval_s, groups
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._count = 0

    def post_one(self, client: httpx.Client) -> None:
        text = f"{self.prefix} {self._count:05d}"
        body = {**GROUP_MESSAGE, "spoken": text, "rawSpoken": text}
        if self.groups > 1:  # conversations on every process of a dataflow cluster
            body["groupName"] = f"集群{self._count % self.groups}群"
        self._count += 1
        try:
            response = client.post(
                "/worktool/callback/message", params={"robotId": ROBOT, "token": TOKEN}, json=body
            )
            if response.status_code == 200:
                self.acknowledged.append(text)
            else:
                self.failures.append(f"{text}: HTTP {response.status_code} {response.text[:200]}")
        except httpx.HTTPError as e:
            self.failures.append(f"{text}: {type(e).__name__}")

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=3.0) as client:  # WorkTool gives up after 3 s
            while not self._stop.is_set():
                self.post_one(client)
                time.sleep(self.interval_s)

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def stored_counts(database_url: str, prefix: str) -> dict[str, int]:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT content, count(*) FROM session_messages WHERE content LIKE %s GROUP BY content",
                (f"{prefix} %",),
            ).fetchall()
    except psycopg.Error:  # the database may be restarting
        return {}
    return dict(rows)


def assert_stored_exactly_once(stack: RunningStack, poster: Poster, timeout_s: float = 90) -> None:
    expected = set(poster.acknowledged)
    deadline = time.monotonic() + timeout_s
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = stored_counts(stack.info["database_url"], poster.prefix)
        if set(counts) >= expected:
            break
        time.sleep(0.5)
    missing = sorted(expected - set(counts))
    assert not missing, (
        f"{len(missing)} acknowledged webhooks not in session_messages: {missing[:5]}\n{stack.tail()}"
    )
    assert set(counts) == expected  # nothing that was not acknowledged
    assert {text: n for text, n in counts.items() if n != 1} == {}


def kill_and_wait_for_restart(stack: RunningStack, name: str) -> int:
    """kill -9 the child `name`; returns its new pid once the supervisor restarted it."""
    old = stack.pid(name)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            state = stack.info["processes"][name]
            if state["state"] == "running" and state["pid"] not in (None, old):
                return state["pid"]
        time.sleep(0.1)
    pytest.fail(f"{name} not restarted within 60 s:\n{stack.tail()}")


@pytest.mark.integration
def test_children_get_only_the_environment_they_need(stack: RunningStack) -> None:
    def environ(pid: int) -> dict[str, str]:
        raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)

    processes = stack.info["processes"]
    assert set(processes) == {"postgres", "kafka", "redis", "dataflow", "gateway", "console", "dispatcher"}
    secrets = {LLM_KEY, TOKEN, METRICS_TOKEN}
    for name in ("postgres", "kafka"):  # (redis overwrites its environment with its process title)
        env = environ(processes[name]["pid"])
        assert not secrets & set(env.values()), name
        assert not any(key.startswith("WORKTOOL_") for key in env), name
    gateway, dataflow = environ(processes["gateway"]["pid"]), environ(processes["dataflow"]["pid"])
    assert "WORKTOOL_LLM_API_KEY" not in gateway
    assert gateway["WORKTOOL_METRICS_TOKEN"] == METRICS_TOKEN
    assert dataflow["WORKTOOL_LLM_API_KEY"] == LLM_KEY
    assert not {TOKEN} & set(dataflow.values())
    console = environ(processes["console"]["pid"])
    assert not {LLM_KEY, TOKEN} & set(console.values())
    # stack.json holds the database password: only its owner may read it.
    assert (stack.data_dir / "stack.json").stat().st_mode & 0o077 == 0


@pytest.mark.integration
def test_webhook_tokens_and_metrics_token_under_up(stack: RunningStack) -> None:
    with httpx.Client(base_url=stack.base, timeout=5) as client:
        wrong = client.post(
            "/worktool/callback/message", params={"robotId": ROBOT, "token": "nope"}, json=GROUP_MESSAGE
        )
        assert wrong.status_code == 401
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert metrics.status_code == 200 and "worktool_gateway_spool_depth" in metrics.text
    assert "webhook tokens configured for 1 robot" in (stack.data_dir / "logs" / "gateway.log").read_text()


@pytest.mark.integration
def test_dataflow_metrics_are_served_on_loopback(stack: RunningStack) -> None:
    url = stack.info["dataflow_metrics_url"]
    assert url.startswith("http://127.0.0.1:")
    urls = stack.info["dataflow_cluster"]["metrics_urls"]  # one per process: base port + process id
    assert urls[0] == url and len(urls) == 2
    with Poster(stack.base, f"metrics-{uuid.uuid4().hex[:6]}") as poster:
        time.sleep(1.5)
    assert poster.acknowledged and not poster.failures
    deadline = time.monotonic() + 30
    texts: list[str] = []
    while time.monotonic() < deadline:  # librdkafka reports statistics every second
        texts = []
        for u in urls:
            with contextlib.suppress(httpx.HTTPError):
                texts.append(
                    httpx.get(u, timeout=2, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
                )
        # (bytewax reports the lag of a partition once it has read from it: the process reading the robot's)
        if any("bytewax_kafka_consumer_lag{" in text for text in texts):
            break
        time.sleep(0.5)
    assert len(texts) == 2 and all("worktool_dataflow_messages_classified_total" in text for text in texts)
    assert any("bytewax_kafka_consumer_lag{" in text for text in texts)


def cluster_members(stack: RunningStack) -> list[psutil.Process]:
    """The bytewax processes of the dataflow cluster (children of the `worktool dataflow` launcher)."""
    launcher = psutil.Process(stack.pid("dataflow"))
    return [p for p in launcher.children() if "bytewax.run" in " ".join(p.cmdline())]


@pytest.mark.integration
@pytest.mark.chaos
def test_one_dataflow_process_killed_restarts_the_cluster_from_its_snapshot_nothing_lost_or_doubled(
    stack: RunningStack,
) -> None:
    """kill -9 of ONE process of the 2-process cluster: its peer cannot go on alone, so the whole cluster
    restarts and resumes from its last snapshot; the gateway refuses nothing, PostgreSQL has every message
    once, and what was processed before the last snapshot is not processed again."""
    info = stack.info
    assert info["dataflow_cluster"]["processes"] == 2
    beats = redis_client.Redis.from_url(info["redis_url"])
    wait_until(lambda: all(beats.exists(process_heartbeat_key(p)) for p in (0, 1)), 60, what="two heartbeats")
    members = wait_until(lambda: len(m := cluster_members(stack)) == 2 and m, 30, what="two processes")

    before = Poster(stack.base, f"before-{uuid.uuid4().hex[:6]}", groups=12)
    with httpx.Client(base_url=stack.base, timeout=3.0) as client:
        for _ in range(36):
            before.post_one(client)
    assert before.failures == []
    assert_stored_exactly_once(stack, before)
    time.sleep(4)  # a snapshot (every 2 s) holds their offsets

    launcher = stack.pid("dataflow")
    with Poster(stack.base, f"cluster-{uuid.uuid4().hex[:6]}", groups=12) as poster:
        time.sleep(1.0)
        os.kill(members[1].pid, signal.SIGKILL)
        wait_until(
            lambda: (s := stack.info["processes"]["dataflow"])["state"] == "running" and s["pid"] != launcher,
            60, what="the cluster restarted",
        )  # fmt: skip
        assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], (
            "a peer left"
        )
        time.sleep(2.0)
    assert poster.failures == []
    assert len(poster.acknowledged) > 20
    assert_stored_exactly_once(stack, poster)

    monitor = consume_all(info["kafka_bootstrap_servers"], "worktool.monitor")
    classified = Counter(
        e["data"]["text"] for m in monitor if (e := m["value"])["event"] == "message_classified"
        and e["data"]["text"].startswith(before.prefix)
    )  # fmt: skip
    assert set(classified) == set(before.acknowledged) and set(classified.values()) == {1}, classified
    launcher_log = (stack.data_dir / "logs" / "dataflow.log").read_text(errors="replace")
    assert "dataflow process 1" in launcher_log and "was killed by signal 9" in launcher_log
    assert "dataflow exited with code 1" in stack.tail(30000)


@pytest.mark.integration
@pytest.mark.chaos
def test_postgres_killed_the_gateway_refuses_nothing_and_nothing_is_lost_or_doubled(
    stack: RunningStack,
) -> None:
    with Poster(stack.base, f"pg-{uuid.uuid4().hex[:6]}") as poster:
        time.sleep(1.0)
        kill_and_wait_for_restart(stack, "postgres")
        time.sleep(2.0)
    assert poster.failures == []
    assert_stored_exactly_once(stack, poster)
    assert "postgres killed by SIGKILL" in stack.tail(20000)


@pytest.mark.integration
@pytest.mark.chaos
def test_broker_killed_the_spool_covers_the_gap_and_nothing_is_lost_or_doubled(stack: RunningStack) -> None:
    # The embedded broker is memory-only: what it acknowledged and the dataflow had not read yet dies
    # with it (README, durability). So first let everything before the kill reach PostgreSQL.
    before = Poster(stack.base, f"kb-before-{uuid.uuid4().hex[:6]}")
    with httpx.Client(base_url=stack.base, timeout=3) as client:
        for _ in range(20):
            before.post_one(client)
    assert_stored_exactly_once(stack, before)

    # Then webhooks from the moment the broker dies, through its restart and after.
    os.kill(stack.pid("kafka"), signal.SIGKILL)
    with Poster(stack.base, f"kb-{uuid.uuid4().hex[:6]}") as poster:
        deadline = time.monotonic() + 60
        while (
            stack.info["processes"]["kafka"]["state"] != "running"
            or stack.info["processes"]["kafka"]["restarts"] < 1
        ):
            assert time.monotonic() < deadline, stack.tail()
            time.sleep(0.1)
        time.sleep(3.0)
    assert poster.failures == []
    assert_stored_exactly_once(stack, poster)
    assert_stored_exactly_once(stack, before)  # a dataflow started from scratch doubles nothing
    health = httpx.get(f"{stack.base}/healthz", timeout=5).json()
    assert health["spool"]["depth"] == 0
    assert health["processes"]["kafka"].startswith("running (restarted")
    log = stack.tail(30000)
    assert "kafka killed by SIGKILL" in log and "topics re-created" in log


@pytest.mark.integration
@pytest.mark.chaos
def test_gateway_killed_is_restarted_and_up_keeps_running(stack: RunningStack) -> None:
    kill_and_wait_for_restart(stack, "gateway")
    deadline = time.monotonic() + 60
    while not answers(f"{stack.base}/healthz"):
        assert stack.up.poll() is None and time.monotonic() < deadline, stack.tail()
        time.sleep(0.2)
    with Poster(stack.base, f"gw-{uuid.uuid4().hex[:6]}") as poster:
        time.sleep(1.0)
    assert poster.failures == [] and poster.acknowledged
    assert_stored_exactly_once(stack, poster)
    assert "gateway killed by SIGKILL" in stack.tail(30000)


@pytest.mark.chaos
def test_a_sink_waiting_out_an_outage_is_not_a_stall(
    tmp_path: Path, clock: FakeClock, redis_url: str
) -> None:
    """A Postgres or broker outage blocks the worker in its sink on purpose (sinks/retry.py): the
    heartbeat goes stale, but killing the dataflow would not help. Only without that notice is it a stall."""
    import redis as redis_client

    from sinks.heartbeat import SINK_WAITING_KEY, process_heartbeat_key

    HEARTBEAT_KEY = process_heartbeat_key(0)  # noqa: N806 (the one process's own heartbeat)

    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        dataflow = FakeChild(pid=sleeper.pid)
        stack = fake_stack(tmp_path, dataflow=dataflow)
        stack.redis_url = redis_url
        client = redis_client.Redis.from_url(redis_url)
        client.set(HEARTBEAT_KEY, str(time.time() - 2 * stack.settings.dataflow_stall_s))
        client.set(SINK_WAITING_KEY, "postgres", ex=60)
        clock.now += 3 * stack.settings.dataflow_stall_s  # running longer than the heartbeat is old
        stack.supervise_once()
        assert sleeper.poll() is None, "a dataflow waiting for its database was killed"

        client.delete(SINK_WAITING_KEY)
        clock.now += up.STALL_CHECK_INTERVAL_S + 0.1
        stack.supervise_once()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            sleeper.kill()
        client.delete(HEARTBEAT_KEY, SINK_WAITING_KEY)


def test_one_stalled_process_of_a_cluster_restarts_the_whole_cluster(
    tmp_path: Path, clock: FakeClock, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each process of a local cluster beats its own key: one stale key is a stall of the cluster, even while
    the other process beats (it cannot go on alone anyway)."""
    import redis as redis_client

    from dataflows.cluster import ClusterShape

    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    client = redis_client.Redis.from_url(redis_url)
    keys = [process_heartbeat_key(p) for p in (0, 1)]
    try:
        stack = fake_stack(tmp_path, dataflow=FakeChild(pid=sleeper.pid))
        stack.cluster = ClusterShape(workers=1, processes=2)
        assert stack.cluster.beating_processes(stack.settings.shards) == [0, 1]
        stack.redis_url = redis_url
        stall_s = stack.settings.dataflow_stall_s
        client.set(keys[0], str(time.time()))
        client.set(keys[1], str(time.time()))
        clock.now += 2 * stall_s
        stack.supervise_once()
        assert sleeper.poll() is None  # both beat

        client.set(keys[1], str(time.time() - 2 * stall_s))  # process 1 stopped beating, process 0 goes on
        clock.now += up.STALL_CHECK_INTERVAL_S + 0.1
        stack.supervise_once()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
        assert "in process 1 of the cluster" in caplog.text
    finally:
        with contextlib.suppress(ProcessLookupError):
            sleeper.kill()
        client.delete(*keys)


def test_a_waiting_sink_tells_the_supervisor() -> None:
    from sinks.retry import WAIT_LISTENERS, Backoff, Waiter

    heard: list[str] = []
    WAIT_LISTENERS.append(heard.append)
    try:
        with Waiter("postgres", Backoff(initial_s=0), sleep=lambda _s: None) as waiter:
            waiter.wait(OSError("down"))
            waiter.wait(OSError("down"))
    finally:
        WAIT_LISTENERS.remove(heard.append)
    assert heard == ["postgres", "postgres"]
