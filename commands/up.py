"""`worktool up`: the whole stack as one supervised process tree.

Start order: embedded PostgreSQL, broker, Redis (each skipped when its URL is set), topics, migrations,
then the dataflow and the gateway as child processes that get the resolved URLs through the environment.
Ctrl-C / SIGTERM stop the gateway first (no new input), then the dataflow, then Redis, broker, PostgreSQL.

Supervision: intake never depends on the rest. A child that dies (dataflow, broker, database, Redis, or
the gateway itself) is restarted with capped exponential back-off (0.5 s doubling to 30 s; reset after a
minute of running) and never given up on; each death is logged with its exit code and log file, and
stack.json (which the gateway's /healthz reads) shows every child's state and restart count. An embedded
server restarts on the same port with the same data directory. The embedded broker is memory-only, so a
restarted one is empty: the topics are re-created, and the running dataflow notices the new topics and
reads them from their beginning, while the gateway's spool holds what arrived meanwhile. The dataflow is only
restarted once the servers it needs are up again; the gateway never waits for anything.

Children get only the environment they need: the embedded servers nothing but PATH and locale
(infra.embedded.server_env), the gateway no LLM key, the dataflow no webhook token. Least privilege: the
gateway, the dataflow and the console each get their own database login as DATABASE_URL (migration 0006's
roles; generated for the embedded PostgreSQL), the dispatcher none; every /metrics needs the metrics
token; the umask is 077 (data dir 0700, logs, spool segments and state 0600).

Every child is a direct child in its own process group, so a terminal's Ctrl-C reaches only this
supervisor, which then stops the children in that order; if the supervisor itself is killed, the kernel
signals the children (parent-death signal), so nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from dataflows.cluster import ClusterShape, consecutive_free_ports
from dataflows.watchdog import poison_in_flight, watchdog_dir
from infra.embedded import (
    ChildProcess,
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServer,
    free_port,
    port_open,
    redact_url,
)
from infra.kafka_admin import ensure_topics_for
from sinks.heartbeat import SINK_WAITING_KEY, process_heartbeat_key
from worktool.settings import Settings

log = logging.getLogger("worktool.up")

HEALTH_TIMEOUT_S = 90.0
SUPERVISE_INTERVAL_S = 0.25
# Per-child stop budgets; together they stay under the 20 s promised for a full shutdown.
GATEWAY_STOP_S = 4.0
DATAFLOW_STOP_S = 6.0
# Restart back-off: first retry after BACKOFF_INITIAL_S, doubling per consecutive failure up to
# BACKOFF_MAX_S; a child that ran STABLE_AFTER_S since its last start starts over at the initial delay.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0
STALL_CHECK_INTERVAL_S = 1.0  # how often the dataflow's heartbeat is read (WORKTOOL_DATAFLOW_STALL_S)
DATAFLOW_START_GRACE_S = 60.0  # extra time for a (re)started dataflow's first heartbeat

SERVERS = ("postgres", "kafka", "redis")  # start order; stopped in reverse
APPS = ("dataflow", "gateway", "console", "dispatcher")  # start order

# The environment a Python child (gateway, dataflow) may inherit from `up`: basics, then every variable
# that worktool/settings.py reads, minus the other child's secrets. Anything else (cloud credentials,
# shell history settings, ...) stays with `up`.
BASIC_ENV_NAMES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "VIRTUAL_ENV",
     "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
     "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"}
)  # fmt: skip
BASIC_ENV_PREFIXES = ("LC_", "PYTHON", "BYTEWAX_", "RUST_")
# Which child may see which secret; a secret goes to its owners only (a new child gets none until listed).
SECRET_OWNERS: dict[str, frozenset[str]] = {
    "WORKTOOL_LLM_API_KEY": frozenset({"dataflow"}),
    "WORKTOOL_WEBHOOK_TOKENS": frozenset({"gateway"}),
    "WORKTOOL_WEBHOOK_TOKENS_FILE": frozenset({"gateway"}),
    # Every part serving /metrics checks it (`up` generates one when it is not given).
    "WORKTOOL_METRICS_TOKEN": frozenset({"gateway", "dataflow", "console", "dispatcher"}),
    # The parts' database logins: `up` hands each part its own as DATABASE_URL (child_env).
    "WORKTOOL_DATABASE_URL_GATEWAY": frozenset(),
    "WORKTOOL_DATABASE_URL_DATAFLOW": frozenset(),
    "WORKTOOL_DATABASE_URL_CONSOLE": frozenset(),
    "WORKTOOL_API_TOKEN": frozenset({"console"}),
    "WORKTOOL_JWT_SECRET": frozenset({"console"}),
    # The console encrypts the LLM keys set through it; the dataflow decrypts them (classifiers/llm/keys.py).
    "WORKTOOL_SECRETS_KEY": frozenset({"console", "dataflow"}),
    # Webhook URLs may carry their provider's credentials.
    "WORKTOOL_PHONE_WEBHOOK_URL": frozenset({"dispatcher"}),
    "WORKTOOL_SMS_WEBHOOK_URL": frozenset({"dispatcher"}),
}
SETTINGS_ENV_NAMES = frozenset(field.alias or name.upper() for name, field in Settings.model_fields.items())
# Least privilege: the parts that use the database, each with its own login (migration 0006); every other
# child (the dispatcher) gets no database URL at all.
DATABASE_PARTS = ("gateway", "dataflow", "console")
METRICS_TOKEN_FILE = "metrics_token"  # in the data dir, 0600, when WORKTOOL_METRICS_TOKEN is not given
# Everything `up` and its children create (data, logs, spool segments with full message bodies, recovery
# state) is for this user only: the data dir is 0700, files 0600.
UMASK = 0o077


def _staleness(age: float | None) -> float:
    return float("inf") if age is None else age


def describe_exit(code: int | None) -> str:
    if code is None:
        return "exited"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def backoff_delay(failures: int) -> float:
    """Seconds before restart attempt number `failures` (1, 2, ...) of a crash loop."""
    return min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(0, failures - 1))


@dataclass
class ChildState:
    """Restart bookkeeping of one supervised child."""

    name: str
    restarts: int = 0  # successful restarts since `up` started
    failures: int = 0  # consecutive deaths/failed restarts since it last ran STABLE_AFTER_S
    started_at: float = 0.0  # monotonic
    retry_at: float | None = None  # monotonic; set while the child is down
    last_exit: str | None = None

    def as_info(self, running: bool, pid: int | None) -> dict[str, object]:
        info: dict[str, object] = {
            "state": "running" if running else "restarting",
            "pid": pid if running else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }
        if not running and self.retry_at is not None:
            due = datetime.now(UTC) + timedelta(seconds=max(0.0, self.retry_at - time.monotonic()))
            info["retry_at"] = due.isoformat(timespec="seconds").replace("+00:00", "Z")
        return info


class Shutdown(Exception):  # noqa: N818 (a request, not an error)
    """Ctrl-C, SIGTERM or SIGHUP: stop everything and exit 0."""


def _raise_shutdown(signum: int, _frame: object) -> None:
    raise Shutdown(signal.Signals(signum).name)


class Stack:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.logs_dir = self.data_dir / "logs"
        self.kafka_url = settings.kafka_bootstrap_servers
        self.database_url = settings.database_url
        self.redis_url = settings.redis_url
        self.servers: dict[str, EmbeddedServer] = {}
        self.apps: dict[str, ChildProcess] = {}
        self.states: dict[str, ChildState] = {}
        self._next_stall_check = 0.0
        self._told_sink_waiting = False
        # The dataflow: one process, or a local cluster (`--processes`: each process beats, serves metrics on
        # base port + its id, writes logs/dataflow-<id>.log; one that dies or stalls restarts them all).
        self.cluster = ClusterShape(
            workers=settings.dataflow_workers or 1, processes=settings.dataflow_processes or 1
        )
        self.dataflow_metrics_port = settings.dataflow_metrics_port or (
            consecutive_free_ports(self.cluster.processes) if self.cluster.processes > 1 else free_port()
        )
        self.api_port = settings.api_port
        self.dispatcher_metrics_port = free_port()
        self.worktool_api_url: str | None = None  # None: the dispatcher sends to WORKTOOL_API_BASE_URL
        self.console_token: str | None = None  # a one-run token for the demo's console (printed)
        # part -> its own database URL (least privilege); filled once migrations ran.
        self.part_database_urls: dict[str, str] = {}
        self.metrics_token: str | None = settings.metrics_token

    @property
    def local_host(self) -> str:
        """Where this process reaches the gateway (a wildcard bind answers on loopback)."""
        host = self.settings.http_host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    @property
    def http_url(self) -> str:
        return f"http://{self.local_host}:{self.settings.http_port}"

    # -- start --------------------------------------------------------------------------------

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/"

    @property
    def dataflow_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.dataflow_metrics_port}/metrics"

    def start_services(self) -> None:
        # Fail before starting anything when the gateway could not bind or would refuse its tokens.
        if port_open(self.local_host, self.settings.http_port):
            raise RuntimeError(f"port {self.settings.http_port} is in use: set WORKTOOL_HTTP_PORT")
        from gateway.auth import load_webhook_tokens

        load_webhook_tokens(self.settings)
        if port_open("127.0.0.1", self.api_port):
            # The console is not intake: another port is better than no console (or no stack).
            busy, self.api_port = self.api_port, free_port()
            log.warning("console port %d is in use; serving the console on %d (set WORKTOOL_API_PORT)",
                        busy, self.api_port)  # fmt: skip
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # it holds message bodies, logs and the database passwords
        for sub in ("logs", "spool"):
            (self.data_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._ensure_metrics_token()
        if not self.database_url:
            self.database_url = self._start_server(
                EmbeddedPostgres(self.data_dir / "postgres", **self._log("postgres"))
            )
        if not self.kafka_url:
            self.kafka_url = self._start_server(EmbeddedKafka(self.data_dir / "kafka", **self._log("kafka")))
            self._forget_recovery_state()
        if not self.redis_url:
            self.redis_url = self._start_server(EmbeddedRedis(self.data_dir / "redis", **self._log("redis")))

        self._ensure_topics()
        log.info("topics ready: %s", ", ".join(self.settings.all_topics))
        from infra.migrate import apply_up

        apply_up(self.database_url)
        log.info("migrations applied")
        self._part_logins()

    def _ensure_metrics_token(self) -> None:
        """Every /metrics of the stack needs a bearer token: WORKTOOL_METRICS_TOKEN, or one generated once
        into the data directory (0600) for Prometheus to read."""
        if self.metrics_token:
            return
        path = self.data_dir / METRICS_TOKEN_FILE
        try:
            self.metrics_token = path.read_text().strip() or None
        except OSError:
            self.metrics_token = None
        if not self.metrics_token:
            self.metrics_token = secrets.token_urlsafe(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.metrics_token + "\n")
        log.info("the /metrics endpoints need the bearer token in %s", path)

    def _part_logins(self) -> None:
        """Each part's own database login: generated for the embedded PostgreSQL; for an external database
        the WORKTOOL_DATABASE_URL_<PART> variables, or (loudly) the owner's URL when they are not set."""
        assert self.database_url
        if "postgres" in self.servers:
            from infra.db_roles import provision_embedded

            self.part_database_urls = provision_embedded(self.database_url, self.data_dir)
            log.info("database logins of the gateway, dataflow and console ready (least privilege)")
            return
        given = {part: getattr(self.settings, f"database_url_{part}") for part in DATABASE_PARTS}
        missing = [f"WORKTOOL_DATABASE_URL_{part.upper()}" for part, url in given.items() if not url]
        if missing:
            log.warning(
                "LEAST PRIVILEGE OFF: %s not set, so those parts connect with DATABASE_URL, the owner's "
                "login that may change any table; give each part its own login (docs/operations.md, "
                "'Database roles')",
                ", ".join(missing),
            )
        self.part_database_urls = {part: url or self.database_url for part, url in given.items()}

    def _ensure_topics(self) -> None:
        """Every topic, sized for the record limits (a real cluster's default takes 1 MB records), and the
        raw topic with a partition for each dataflow worker at least (a partition is read by one worker)."""
        update: dict[str, object] = {"kafka_bootstrap_servers": self.kafka_url}
        if self.cluster.total_workers > self.settings.raw_partitions:
            update["raw_partitions"] = self.cluster.total_workers
            log.info("raw topic: %d partitions, one per dataflow worker (WORKTOOL_RAW_PARTITIONS is %d)",
                     self.cluster.total_workers, self.settings.raw_partitions)  # fmt: skip
        ensure_topics_for(self.settings.model_copy(update=update))

    def _log(self, name: str) -> dict[str, Path]:
        return {"log_path": self.logs_dir / f"{name}.log"}

    def _start_server(self, server: EmbeddedServer) -> str:
        log.info("starting embedded %s", server.name)
        self.servers[server.name] = server  # before start(): a signal during the start still stops it
        server.start()
        self.states[server.name] = ChildState(server.name, started_at=time.monotonic())
        return server.url

    def _forget_recovery_state(self) -> None:
        """The embedded broker keeps records in memory only, so it always starts empty. The dataflow's
        recovery snapshots hold offsets into the previous broker's topics; resuming from them would skip
        (or wait for) records that no longer exist. Start the dataflow from scratch instead.
        Called at start and after every restart of the embedded broker (the dataflow is stopped then)."""
        recovery = self.settings.recovery_dir.resolve()
        if recovery.exists():
            shutil.rmtree(recovery)
            log.warning(
                "fresh embedded broker (memory-only): removed dataflow recovery state %s; "
                "the dataflow starts from the beginning of the new, empty topics",
                recovery,
            )

    def start_apps(self) -> None:
        # The dataflow first: the gateway's /healthz waits for its heartbeat anyway.
        for name, stop_signal, stop_s in (
            # SIGINT is bytewax's graceful stop (KeyboardInterrupt between batches).
            ("dataflow", signal.SIGINT, DATAFLOW_STOP_S),
            ("gateway", signal.SIGTERM, GATEWAY_STOP_S),
            ("console", signal.SIGTERM, GATEWAY_STOP_S),
            # SIGTERM lets it finish, record and commit the request in flight.
            ("dispatcher", signal.SIGTERM, DATAFLOW_STOP_S),
        ):
            log.info("starting %s", name)
            extra = (
                ["--log-dir", str(self.logs_dir)] if name == "dataflow" and self.cluster.processes > 1 else []
            )
            self.apps[name] = ChildProcess(
                name,
                [sys.executable, "-m", "commands.cli", name, *extra],
                self.logs_dir / f"{name}.log",
                stop_signal=stop_signal,
                stop_timeout_s=stop_s,
                env=self.child_env(name),
            ).start()
            self.states[name] = ChildState(name, started_at=time.monotonic())

    def child_env(self, name: str) -> dict[str, str]:
        """The environment of a Python child: basics and settings, and only the secrets it owns."""
        env = {
            key: value
            for key, value in os.environ.items()
            if (key in BASIC_ENV_NAMES or key.startswith(BASIC_ENV_PREFIXES) or key in SETTINGS_ENV_NAMES)
            and name in SECRET_OWNERS.get(key, frozenset({name}))
        }
        env.pop("DATABASE_URL", None)
        if name in DATABASE_PARTS:  # its own login; the dispatcher gets none
            env["DATABASE_URL"] = self.part_database_urls.get(name) or self.database_url or ""
        if self.metrics_token:
            env["WORKTOOL_METRICS_TOKEN"] = self.metrics_token
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.kafka_url or "",
            REDIS_URL=self.redis_url or "",
            WORKTOOL_DATA_DIR=str(self.data_dir),
            WORKTOOL_HTTP_HOST=self.settings.http_host,
            WORKTOOL_HTTP_PORT=str(self.settings.http_port),
            PYTHONUNBUFFERED="1",  # logs reach the file as they happen
        )
        if name == "gateway":
            env["WORKTOOL_STACK_INFO"] = str(self.info_path)
        elif name == "console":
            env["WORKTOOL_API_PORT"] = str(self.api_port)
            if self.console_token is not None:
                env["WORKTOOL_API_TOKEN"] = self.console_token
        elif name == "dispatcher":
            env["WORKTOOL_DISPATCHER_METRICS_PORT"] = str(self.dispatcher_metrics_port)
            if self.worktool_api_url is not None:
                env["WORKTOOL_API_BASE_URL"] = self.worktool_api_url
        elif name == "dataflow":
            env["WORKTOOL_DATAFLOW_METRICS_PORT"] = str(self.dataflow_metrics_port)
            for key in ("WORKTOOL_DATAFLOW_PROCESS_ID", "WORKTOOL_DATAFLOW_ADDRESSES"):
                env.pop(key, None)  # `up` runs the whole cluster on this machine
            env["WORKTOOL_DATAFLOW_WORKERS"] = str(self.cluster.workers)
            env["WORKTOOL_DATAFLOW_PROCESSES"] = str(self.cluster.processes)
            env.setdefault("WORKTOOL_DATAFLOW_METRICS_HOST", "127.0.0.1")
        return env

    @property
    def info_path(self) -> Path:
        return self.data_dir / "stack.json"

    def write_info(self) -> None:
        """Where everything runs and how each child is doing, for tools, tests and the gateway's /healthz
        (removed on stop). 0600 and replaced atomically: it holds the database URL with its password."""
        info = {
            "pid": os.getpid(),
            "http_url": self.http_url,
            "kafka_bootstrap_servers": self.kafka_url,
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "dataflow_metrics_url": self.dataflow_metrics_url,
            "dataflow_cluster": {
                "workers": self.cluster.workers,
                "processes": self.cluster.processes,
                "metrics_urls": [
                    f"http://127.0.0.1:{self.dataflow_metrics_port + i}/metrics"
                    for i in range(self.cluster.processes)
                ],
            },
            "console_url": self.console_url,
            "embedded": sorted(self.servers),
            "logs_dir": str(self.logs_dir),
            "processes": {
                name: self.states[name].as_info(proc.running, proc.pid)
                for name, proc in self._children().items()
                if name in self.states
            },
        }
        tmp = self.info_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info, indent=2) + "\n")
        tmp.replace(self.info_path)

    # -- supervise ----------------------------------------------------------------------------

    def _children(self) -> dict[str, EmbeddedServer | ChildProcess]:
        """Every supervised child in start order: servers before the apps that need them."""
        children: dict[str, EmbeddedServer | ChildProcess] = {}
        children.update((name, self.servers[name]) for name in SERVERS if name in self.servers)
        children.update(self.servers)  # any other, after the known ones
        children.update((name, self.apps[name]) for name in APPS if name in self.apps)
        children.update(self.apps)
        return children

    def supervise_once(self) -> None:
        """Notice dead children and restart those whose back-off has passed."""
        self._check_dataflow_progress()
        changed = False
        for name, proc in self._children().items():
            state = self.states[name]
            now = time.monotonic()
            if proc.running:
                if state.failures and now - state.started_at >= STABLE_AFTER_S:
                    state.failures = 0  # it ran long enough: the next death restarts it quickly again
                continue
            if state.retry_at is None:
                state.failures += 1
                state.last_exit = describe_exit(proc.returncode)
                state.retry_at = now + backoff_delay(state.failures)
                log.error(
                    "%s %s (pid %s); log %s; restarting in %.1f s (failure %d in a row, %d restart(s) so far)",
                    name, state.last_exit, proc.pid, self.logs_dir / f"{name}.log",
                    state.retry_at - now, state.failures, state.restarts,
                )  # fmt: skip
                changed = True
            if now < state.retry_at or not self._may_restart(name):
                continue
            self._restart(name, state)
            changed = True
        if changed:
            self.write_info()

    def _check_dataflow_progress(self) -> None:
        """A running dataflow whose heartbeat stopped is stalled (an idle one still beats: its ticks pass
        every step and refresh the heartbeat every second): put the record it is stuck on, if any, on the
        poison list (it is skipped after the restart) and kill it; the loop below restarts it."""
        stall_s = self.settings.dataflow_stall_s
        dataflow = self.apps.get("dataflow")
        now = time.monotonic()
        if not stall_s or dataflow is None or not dataflow.running or not self.redis_url:
            return
        if now < self._next_stall_check:
            return
        self._next_stall_check = now + STALL_CHECK_INTERVAL_S
        state = self.states["dataflow"]
        running_for = now - state.started_at
        if running_for < stall_s:
            return
        beating = self.cluster.beating_processes(self.settings.shards)
        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=1, socket_connect_timeout=1)
            try:
                beats = client.mget([process_heartbeat_key(p) for p in beating])
                waiting_on = client.get(SINK_WAITING_KEY)
            finally:
                client.close()
        except redis.RedisError:
            return  # no judgement without Redis (its own supervision restarts it)
        # Every process that holds a shard beats; the cluster is as live as its stalest process.
        ages = {
            p: (time.time() - float(b) if b is not None else None)
            for p, b in zip(beating, beats, strict=True)
        }
        process = max(beating, key=lambda p: _staleness(ages[p]))
        age = ages[process]
        if age is not None and age < stall_s:
            self._told_sink_waiting = False
            return
        if waiting_on is not None:
            # a sink waits out an outage (sinks/retry.py): blocked on purpose, a restart would not help
            if not self._told_sink_waiting:
                log.warning(
                    "dataflow heartbeat is stale while its %s sink waits for the service; not restarting it",
                    waiting_on.decode(errors="replace"),
                )
                self._told_sink_waiting = True
            return
        self._told_sink_waiting = False
        if age is None or age > running_for:
            # no heartbeat since this start: give the start (Kafka assignment, recovery) its grace
            if running_for < stall_s + DATAFLOW_START_GRACE_S:
                return
            why = f"no heartbeat in the {running_for:.0f} s since it started"
        else:
            why = f"heartbeat {age:.0f} s old"
        if self.cluster.processes > 1:
            why += f" in process {process} of the cluster"
        poisoned = poison_in_flight(
            watchdog_dir(self.data_dir, process), self.settings.step_budget_s, f"the dataflow stalled ({why})"
        )
        log.error(
            "dataflow stalled: %s (WORKTOOL_DATAFLOW_STALL_S=%g); %s; killing it (pid %s) for a restart",
            why, stall_s,
            f"record {poisoned[1]} of step {poisoned[0]} put on the poison list" if poisoned
            else "no record in flight over its budget",
            dataflow.pid,
        )  # fmt: skip
        with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
            os.killpg(dataflow.pid, signal.SIGKILL)  # type: ignore[arg-type]

    def _may_restart(self, name: str) -> bool:
        """The dataflow (and any later app but the gateway) needs the servers we run: restarting it while
        one is down would only crash it again. The gateway and the servers depend on nothing."""
        if name == "gateway" or name in self.servers:
            return True
        return all(server.running for server in self.servers.values())

    def _restart(self, name: str, state: ChildState) -> None:
        log.warning("restarting %s (restart %d)", name, state.restarts + 1)
        try:
            if name in self.servers:
                self.servers[name].restart()
                if name == "kafka":
                    self._after_broker_restart()
            else:
                app = self.apps[name]
                app.kill_leftovers()
                app.start()
        except Exception as e:
            if name in self.servers:  # half done (e.g. up but no topics): the next attempt redoes it all
                self.servers[name].stop()
            state.failures += 1
            state.retry_at = time.monotonic() + backoff_delay(state.failures)
            state.last_exit = f"restart failed: {type(e).__name__}"
            log.error(
                "restarting %s failed: %s; next attempt in %.1f s (log %s)",
                name, e, backoff_delay(state.failures), self.logs_dir / f"{name}.log",
            )  # fmt: skip
            return
        state.restarts += 1
        state.started_at = time.monotonic()
        state.retry_at = None
        log.warning("%s restarted (pid %s, restart %d)", name, self._children()[name].pid, state.restarts)

    def _after_broker_restart(self) -> None:
        """A restarted embedded broker is empty: re-create the topics. The gateway reconnects by itself
        and drains its spool; the running dataflow notices the recreated topics (new topic ids) and reads
        them from their beginning, keeping its state, so what the dead broker lost is reported as a
        pipeline_gap (docs/rules.md §9); a dataflow that restarts meanwhile does the same from its
        snapshot (dataflows/sources.py)."""
        # Topics first: Tansu creates a topic on first produce with its own partition count, and the
        # gateway is producing (or draining its spool) again as soon as the port answers.
        self._ensure_topics()
        log.info("topics re-created: %s; the dataflow re-reads them from the beginning",
                 ", ".join(self.settings.all_topics))  # fmt: skip

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
        """Supervise until /healthz answers 200; False (and an error logged) after `timeout_s`: the
        stack keeps running and being supervised, the gateway keeps taking webhooks."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.supervise_once()
                try:
                    response = client.get(f"{self.http_url}/healthz")
                    if response.status_code == 200:
                        return True
                    last = f"HTTP {response.status_code}: {response.text[:300]}"
                except httpx.HTTPError as e:
                    last = type(e).__name__
                time.sleep(0.5)
        log.error("/healthz not 200 after %.0f s (last: %s); still supervising", timeout_s, last)
        return False

    def supervise(self) -> None:
        """Returns only by exception: Shutdown from a signal."""
        while True:
            self.supervise_once()
            time.sleep(SUPERVISE_INTERVAL_S)

    # -- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self.info_path.unlink(missing_ok=True)
        # The gateway first (no new input), the dataflow last (it processes what the others produced).
        for name in ["gateway", *(n for n in self.apps if n not in ("gateway", "dataflow")), "dataflow"]:
            if app := self.apps.pop(name, None):
                log.info("stopping %s", name)
                app.stop()
        for name in ("redis", "kafka", "postgres"):
            if server := self.servers.pop(name, None):
                log.info("stopping embedded %s", name)
                server.stop()

    # -- report -------------------------------------------------------------------------------

    def status_table(self) -> Table:
        table = Table(title=f"worktool up  (data in {self.data_dir})", title_justify="left")
        table.add_column("part")
        table.add_column("where")
        table.add_column("log (in data dir)")

        def row(part: str, name: str, where: str) -> None:
            mine = name in self.servers or name in self.apps
            if name in ("kafka", "postgres", "redis"):
                where += "  (embedded)" if mine else "  (external)"
            table.add_row(part, where, f"logs/{name}.log" if mine else "-")

        row("gateway", "gateway", f"{self.http_url}  (webhooks, /healthz, /metrics)")
        shape = (
            f"{self.cluster.processes} processes x {self.cluster.workers} workers, "
            if self.cluster.processes > 1
            else ""
        )
        row(
            "dataflow",
            "dataflow",
            f"bytewax, {shape}recovery/ in data dir; metrics {self.dataflow_metrics_url}",
        )
        row("console", "console", f"{self.console_url}  (live monitor page, API docs at /docs)")
        sends_to = self.worktool_api_url or self.settings.api_base_url
        row("dispatcher", "dispatcher", f"commands -> {sends_to}; metrics :{self.dispatcher_metrics_port}")
        row("broker", "kafka", self.kafka_url or "")
        row("database", "postgres", redact_url(self.database_url or ""))
        row("redis", "redis", self.redis_url or "")
        return table


def _setup_logging(console: Console) -> None:
    root = logging.getLogger()
    if not root.handlers:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per demo request otherwise


def _start_demo(stack: Stack, console: Console) -> threading.Thread:
    from commands import demo

    def run() -> None:
        try:
            demo.run(stack.http_url, stack.database_url, stack.kafka_url, stack.settings, console)
        except Exception:
            log.exception("demo failed (the stack keeps running)")

    thread = threading.Thread(target=run, name="demo", daemon=True)
    thread.start()
    return thread


def up_settings(data_dir: Path | None, workers: int | None = None, processes: int | None = None) -> Settings:
    """The settings, with what the command line gives instead."""
    update: dict[str, object] = {}
    if data_dir is not None:
        update["data_dir"] = data_dir
    if workers is not None:
        update["dataflow_workers"] = workers
    if processes is not None:
        update["dataflow_processes"] = processes
    return Settings().model_copy(update=update)


def run_up(
    demo: bool, data_dir: Path | None, workers: int | None = None, processes: int | None = None
) -> int:
    settings = up_settings(data_dir, workers, processes)
    # A wide console even when not a terminal: the status table carries URLs that must stay whole.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    _setup_logging(console)

    stack = Stack(settings)
    sandbox = None
    if demo:  # the demo's commands go to a local stand-in for WorkTool, never to the internet
        from commands.sandbox import SandboxWorkTool

        sandbox = SandboxWorkTool(stack.http_url).start()
        stack.worktool_api_url = sandbox.url
        log.info("demo: the dispatcher sends to a local WorkTool sandbox at %s", sandbox.url)
        if not settings.api_token:  # so that a newcomer can log in to the console page at once
            stack.console_token = secrets.token_urlsafe(18)
    os.umask(UMASK)  # before anything is created; the children inherit it
    previous = {s: signal.signal(s, _raise_shutdown) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    try:
        stack.start_services()
        stack.start_apps()
        stack.write_info()
        console.print(stack.status_table())
        if stack.wait_healthy():
            console.print(
                f"[bold green]ready[/]  webhooks {stack.http_url}  console {stack.console_url}  (Ctrl-C to stop)"
            )
            if stack.console_token:
                console.print(f"console login for this run: paste the token [bold]{stack.console_token}[/]")
            if demo:
                _start_demo(stack, console)
        stack.supervise()
    except Shutdown as e:
        log.info("%s received: stopping", e)
    except Exception as e:  # startup failures: say what, then clean up like any other stop
        log.error("worktool up failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        code = 1
    finally:
        # A second Ctrl-C must not interrupt the shutdown half-way (that is what would orphan things).
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        started = time.monotonic()
        stack.stop()
        if sandbox is not None:
            sandbox.stop()
        log.info("stopped in %.1f s", time.monotonic() - started)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
