"""GET /healthz: is the whole pipeline able to take a message through?

Ready means the broker answers metadata, PostgreSQL answers `SELECT 1` and the dataflow's heartbeat key
exists in Redis. Each check's result is cached for about a second and concurrent callers share one run,
so a busy prober costs the webhook nothing. Reported states never contain URLs (they may hold passwords).

Under `worktool up` the supervisor's process states (stack.json, WORKTOOL_STACK_INFO) are reported too:
a dead or restarting child (dataflow, broker, database, redis) makes the answer "degraded" at once, with
its exit code and restart count, while the webhook goes on answering (to the broker or to the spool).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HEARTBEAT_KEY = "worktool:dataflow:heartbeat"  # written by sinks.heartbeat (kept equal by a test)
OFFSET_RESET_KEY = "worktool:dataflow:offset_reset"  # written by the dataflow when it re-read a topic
CHECK_TIMEOUT_S = 1.0
CACHE_S = 1.0

Check = Callable[[], Awaitable[str]]  # returns "ok" or what is wrong


class _Cached:
    """One check, run at most once per CACHE_S; callers in the meantime get the last answer."""

    def __init__(self, check: Check):
        self._check = check
        self._state = "unknown"
        self._at = float("-inf")
        self._running: asyncio.Task[str] | None = None

    async def state(self) -> str:
        if time.monotonic() - self._at < CACHE_S:
            return self._state
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> str:
        try:
            self._state = await asyncio.wait_for(self._check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            self._state = "down: no answer within 1 s"
        except Exception as e:
            self._state = f"down: {type(e).__name__}"
        self._at = time.monotonic()
        self._running = None
        return self._state


class HealthChecker:
    def __init__(
        self,
        kafka_probe: Callable[[], Awaitable[bool]],
        database_url: str | None,
        redis_url: str | None,
        stack_info: Path | None = None,
    ):
        self._kafka_probe = kafka_probe
        self._stack_info = stack_info
        self._database_url = database_url
        self._redis_url = redis_url
        self._pg: Any = None  # psycopg.AsyncConnection, opened on first use and reopened after an error
        self._redis: Any = None  # redis.asyncio.Redis
        self.notices: list[str] = []  # things worth a look that do not make the pipeline unready
        self._checks = {
            "kafka": _Cached(self._check_kafka),
            "postgres": _Cached(self._check_postgres),
            "redis": _Cached(self._check_redis),
        }

    async def report(self) -> tuple[bool, dict[str, str]]:
        names = list(self._checks)
        states = await asyncio.gather(*(self._checks[n].state() for n in names))
        components = dict(zip(names, states, strict=True))
        processes = self.processes() or {}
        ready = all(s == "ok" for s in states) and all(s.startswith("running") for s in processes.values())
        return ready, components

    def processes(self) -> dict[str, str] | None:
        """The supervisor's view of each child ("running", "running (restarted N times, last ...)" or
        "down: ..."); None when not run by `worktool up`."""
        if self._stack_info is None:
            return None
        try:
            info = json.loads(self._stack_info.read_text())
        except (OSError, ValueError):
            return {"supervisor": "down: no stack info"}
        return {name: describe_process(state) for name, state in info.get("processes", {}).items()}

    async def aclose(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _check_kafka(self) -> str:
        return "ok" if await self._kafka_probe() else "down: no metadata from the broker"

    async def _check_postgres(self) -> str:
        if not self._database_url:
            return "down: DATABASE_URL is not set"
        import psycopg

        try:
            if self._pg is None or self._pg.closed:
                self._pg = await psycopg.AsyncConnection.connect(
                    self._database_url, autocommit=True, connect_timeout=2
                )
            await self._pg.execute("SELECT 1")
            return "ok"
        except BaseException:
            # A broken or cancelled (timed out) connection is not reused.
            pg, self._pg = self._pg, None
            if pg is not None:
                await pg.close()
            raise

    async def _check_redis(self) -> str:
        if not self._redis_url:
            return "down: REDIS_URL is not set"
        import redis.asyncio

        if self._redis is None:
            self._redis = redis.asyncio.Redis.from_url(
                self._redis_url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
            )
        if await self._redis.exists(HEARTBEAT_KEY):
            reset = await self._redis.get(OFFSET_RESET_KEY)
            self.notices = [f"dataflow offsets reset: {reset.decode('utf-8', 'replace')}"] if reset else []
            return "ok"
        return "down: no dataflow heartbeat"


def describe_process(state: dict[str, Any]) -> str:
    """One line for a process entry of stack.json (written by commands/up.py)."""
    restarts = state.get("restarts", 0)
    last_exit = state.get("last_exit")
    if state.get("state") == "running":
        if not restarts:
            return "running"
        return f"running (restarted {restarts} time{'s' if restarts != 1 else ''}; last: {last_exit})"
    retry = f"; next restart attempt at {state['retry_at']}" if state.get("retry_at") else ""
    return f"down: {last_exit or state.get('state')}{retry} (restarted {restarts} times so far)"
