"""`worktool up`: the whole stack as one supervised process tree.

Start order: embedded PostgreSQL, broker, Redis (each skipped when its URL is set), topics, migrations,
then the dataflow and the gateway as child processes that get the resolved URLs through the environment.
Supervision is deliberately simple: if any child dies, everything stops and `up` exits non-zero.
Ctrl-C / SIGTERM stop the gateway first (no new input), then the dataflow, then Redis, broker, PostgreSQL.

Every child is a direct child in its own process group, so a terminal's Ctrl-C reaches only this
supervisor, which then stops the children in that order; if the supervisor itself is killed, the kernel
signals the children (parent-death signal), so nothing is orphaned.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from infra.embedded import (
    ChildProcess,
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    EmbeddedServer,
    port_open,
)
from infra.kafka_admin import ensure_topics, topic_plan
from worktool.settings import Settings

log = logging.getLogger("worktool.up")

HEALTH_TIMEOUT_S = 90.0
SUPERVISE_INTERVAL_S = 0.5
# Per-child stop budgets; together they stay under the 20 s promised for a full shutdown.
GATEWAY_STOP_S = 4.0
DATAFLOW_STOP_S = 6.0


class Shutdown(Exception):  # noqa: N818 (a request, not an error)
    """Ctrl-C, SIGTERM or SIGHUP: stop everything and exit 0."""


class ChildDied(RuntimeError):
    """A supervised process exited on its own."""


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

    @property
    def local_host(self) -> str:
        """Where this process reaches the gateway (a wildcard bind answers on loopback)."""
        host = self.settings.http_host
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    @property
    def http_url(self) -> str:
        return f"http://{self.local_host}:{self.settings.http_port}"

    # -- start --------------------------------------------------------------------------------

    def start_services(self) -> None:
        # Fail before starting anything when the gateway could not bind.
        if port_open(self.local_host, self.settings.http_port):
            raise RuntimeError(f"port {self.settings.http_port} is in use: set WORKTOOL_HTTP_PORT")
        for sub in ("logs", "spool"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.database_url:
            self.database_url = self._start_server(
                EmbeddedPostgres(self.data_dir / "postgres", **self._log("postgres"))
            )
        if not self.kafka_url:
            self.kafka_url = self._start_server(EmbeddedKafka(self.data_dir / "kafka", **self._log("kafka")))
            self._forget_recovery_state()
        if not self.redis_url:
            self.redis_url = self._start_server(EmbeddedRedis(self.data_dir / "redis", **self._log("redis")))

        ensure_topics(self.kafka_url, topic_plan(self.settings))
        log.info("topics ready: %s", ", ".join(self.settings.all_topics))
        from infra.migrate import apply_up

        apply_up(self.database_url)
        log.info("migrations applied")

    def _log(self, name: str) -> dict[str, Path]:
        return {"log_path": self.logs_dir / f"{name}.log"}

    def _start_server(self, server: EmbeddedServer) -> str:
        log.info("starting embedded %s", server.name)
        self.servers[server.name] = server  # before start(): a signal during the start still stops it
        server.start()
        return server.url

    def _forget_recovery_state(self) -> None:
        """The embedded broker keeps records in memory only, so it always starts empty. The dataflow's
        recovery snapshots hold offsets into the previous broker's topics; resuming from them would skip
        (or wait for) records that no longer exist. Start the dataflow from scratch instead."""
        recovery = self.settings.recovery_dir.resolve()
        if recovery.exists():
            shutil.rmtree(recovery)
            log.warning(
                "fresh embedded broker (memory-only): removed dataflow recovery state %s; "
                "the dataflow starts from the beginning of the new, empty topics",
                recovery,
            )

    def start_apps(self) -> None:
        env = self.child_env()
        # The dataflow first: the gateway's /healthz waits for its heartbeat anyway.
        for name, stop_signal, stop_s in (
            # SIGINT is bytewax's graceful stop (KeyboardInterrupt between batches).
            ("dataflow", signal.SIGINT, DATAFLOW_STOP_S),
            ("gateway", signal.SIGTERM, GATEWAY_STOP_S),
        ):
            log.info("starting %s", name)
            self.apps[name] = ChildProcess(
                name,
                [sys.executable, "-m", "commands.cli", name],
                self.logs_dir / f"{name}.log",
                stop_signal=stop_signal,
                stop_timeout_s=stop_s,
                env=env,
            ).start()

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=self.kafka_url or "",
            DATABASE_URL=self.database_url or "",
            REDIS_URL=self.redis_url or "",
            WORKTOOL_DATA_DIR=str(self.data_dir),
            WORKTOOL_HTTP_HOST=self.settings.http_host,
            WORKTOOL_HTTP_PORT=str(self.settings.http_port),
            PYTHONUNBUFFERED="1",  # logs reach the file as they happen
        )
        return env

    @property
    def info_path(self) -> Path:
        return self.data_dir / "stack.json"

    def write_info(self) -> None:
        """Where everything runs, for tools and tests (removed on stop)."""
        info = {
            "pid": os.getpid(),
            "http_url": self.http_url,
            "kafka_bootstrap_servers": self.kafka_url,
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "embedded": sorted(self.servers),
            "logs_dir": str(self.logs_dir),
        }
        self.info_path.write_text(json.dumps(info, indent=2) + "\n")

    # -- supervise ----------------------------------------------------------------------------

    def check_children(self) -> None:
        for name, proc in {**self.servers, **self.apps}.items():
            if not proc.running:
                log_path = self.logs_dir / f"{name}.log"
                raise ChildDied(f"{name} exited with code {proc.returncode}; see {log_path}")

    def wait_healthy(self, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self.check_children()
                try:
                    response = client.get(f"{self.http_url}/healthz")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as e:
                    last = type(e).__name__
                time.sleep(0.5)
        raise TimeoutError(f"/healthz not 200 after {timeout_s:.0f} s (last: {last})")

    def supervise(self) -> None:
        """Returns only by exception: ChildDied, or Shutdown from a signal."""
        while True:
            self.check_children()
            time.sleep(SUPERVISE_INTERVAL_S)

    # -- stop ---------------------------------------------------------------------------------

    def stop(self) -> None:
        self.info_path.unlink(missing_ok=True)
        for name in ("gateway", "dataflow"):
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
        row("dataflow", "dataflow", "bytewax, recovery/ in data dir")
        row("broker", "kafka", self.kafka_url or "")
        row("database", "postgres", self.database_url or "")
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


def run_up(demo: bool, data_dir: Path | None) -> int:
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    # A wide console even when not a terminal: the status table carries URLs that must stay whole.
    console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
    _setup_logging(console)

    stack = Stack(settings)
    previous = {s: signal.signal(s, _raise_shutdown) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    try:
        stack.start_services()
        stack.start_apps()
        stack.write_info()
        console.print(stack.status_table())
        stack.wait_healthy()
        console.print(f"[bold green]ready[/]  {stack.http_url}  (Ctrl-C to stop)")
        if demo:
            _start_demo(stack, console)
        stack.supervise()
    except Shutdown as e:
        log.info("%s received: stopping", e)
    except ChildDied as e:
        log.error("%s; stopping everything", e)
        code = 1
    except Exception as e:  # startup failures: say what, then clean up like any other stop
        log.error("worktool up failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        code = 1
    finally:
        # A second Ctrl-C must not interrupt the shutdown half-way (that is what would orphan things).
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        started = time.monotonic()
        stack.stop()
        log.info("stopped in %.1f s", time.monotonic() - started)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code
