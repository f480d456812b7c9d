"""The live monitor page of the console app.

- `GET /` the page (console/static/, plain HTML/JS/CSS, no build step); `GET /static/{name}` its files.
- `GET /api/monitor/state`: the current state from PostgreSQL, for a browser that connects late.
- `GET /api/monitor/stream`: server-sent events, one `data:` line per monitor event of worktool.monitor.
- `GET /metrics`: Prometheus metrics of the console process (behind WORKTOOL_METRICS_TOKEN when set).

One Kafka consumer per process (MonitorHub) follows every partition of the monitor topic with assign()
(no consumer group to join: Tansu joins groups slowly) and fans each event out to every connected
browser through a bounded queue per client. A client whose queue is full is dropped (it gets a `dropped`
event and reconnects, reloading the state), so a slow browser never holds up the others or the consumer.

The page authenticates with a bearer token (a console login's access token, or WORKTOOL_API_TOKEN);
which dependency checks it is given by the app (`monitor_router(authenticate)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaException, TopicPartition
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from infra import kafka_clients
from infra.topic_watch import CHECK_INTERVAL_S, TopicWatch
from operators.alerts import CANCEL_NAMES, LEVEL_NAMES, TYPE_NAMES
from worktool.events import event_type
from worktool.metrics_auth import CHALLENGE, UNAUTHORIZED_BODY, MetricsAuth

log = logging.getLogger(__name__)

STREAM_CLIENTS = Gauge("worktool_console_stream_clients", "Browsers connected to the monitor stream")
STREAM_DROPPED = Counter(
    "worktool_console_stream_dropped_clients_total",
    "Monitor-stream clients dropped because they did not keep up (their queue was full)",
)
STREAM_EVENTS = Counter(
    "worktool_console_monitor_events_total",
    "Monitor events read from worktool.monitor by the console's consumer, by event (unknown: a name "
    "the catalogue does not know)",
    ["event"],
)

STREAM_RESETS = Counter(
    "worktool_console_stream_resets_total",
    "Times the console's consumer found the monitor topic recreated (a broker that came back empty) and "
    "followed the new topic from its beginning",
)

STATIC_FILES = {
    "monitor.js": "text/javascript; charset=utf-8",
    "customers.js": "text/javascript; charset=utf-8",
    "monitor.css": "text/css; charset=utf-8",
}
STATE_WINDOW = timedelta(hours=1)  # the page's "last hour"


@dataclass(frozen=True)
class MonitorOptions:
    """Tunables of the monitor stream (app.state.monitor_options overrides the defaults)."""

    queue_size: int = 1000  # events buffered per client before it counts as too slow
    keepalive_s: float = 15.0  # a comment line this often keeps proxies and the browser from timing out
    since: datetime | None = None  # start the consumer here instead of at the end of every partition
    poll_timeout_s: float = 0.2
    topic_check_s: float = CHECK_INTERVAL_S  # how often the topic's id is checked (infra/topic_watch.py)


# ---------------------------------------------------------------------------------------------
# The consumer and the fan-out


@dataclass(eq=False)
class Subscription:
    """One connected browser: its queue of SSE frames; None in the queue means "you were dropped"."""

    queue: asyncio.Queue[bytes | None]
    dropped: bool = False


def sse_frame(payload: bytes) -> bytes:
    """One SSE message whose data is a single JSON line (orjson never writes newlines)."""
    return b"data: " + payload + b"\n\n"


@dataclass(eq=False)
class MonitorHub:
    """One Kafka consumer of the monitor topic, read in a thread, fanned out on the event loop."""

    bootstrap: str
    topic: str
    options: MonitorOptions = field(default_factory=MonitorOptions)
    subscribers: set[Subscription] = field(default_factory=set)
    started_at: datetime | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.ready = asyncio.Event()  # set once every partition is assigned
        self.error: str | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="monitor-consumer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        for sub in list(self.subscribers):
            self._drop(sub, count=False)

    def subscribe(self) -> Subscription:
        sub = Subscription(asyncio.Queue(maxsize=self.options.queue_size))
        self.subscribers.add(sub)
        STREAM_CLIENTS.set(len(self.subscribers))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)
        STREAM_CLIENTS.set(len(self.subscribers))

    def publish(self, payloads: Sequence[bytes]) -> None:
        """Queue the events for every client (on the event loop); drop the clients that are full."""
        frames = [sse_frame(p) for p in payloads]
        for sub in list(self.subscribers):
            try:
                for frame in frames:
                    sub.queue.put_nowait(frame)
            except asyncio.QueueFull:
                self._drop(sub)

    def _drop(self, sub: Subscription, count: bool = True) -> None:
        sub.dropped = True
        self.unsubscribe(sub)
        if count:
            STREAM_DROPPED.inc()
            log.warning("monitor stream: dropped a client that fell %d events behind", sub.queue.qsize())
        while not sub.queue.empty():  # make room for the sentinel: what is queued is of no use now
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    # -- the consumer thread --------------------------------------------------------------------

    def _consumer(self) -> Consumer:
        # The monitor_stream role (infra/kafka_clients.py): assign() only, the group id is required but
        # never joined (a throw-away one); nothing is stored or committed; short timeouts for Tansu.
        return kafka_clients.consumer("monitor_stream", self.bootstrap)

    def _assignment(self, consumer: Consumer) -> list[TopicPartition]:
        while not self._stop.is_set():
            try:
                meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            except KafkaException as e:
                log.warning("monitor stream: no metadata for %s yet (%s)", self.topic, e)
                meta = None
            if meta is not None and meta.error is None and meta.partitions:
                partitions = sorted(meta.partitions)
                break
            self._stop.wait(1.0)
        else:
            return []
        since = self.options.since
        if since is None:
            return [TopicPartition(self.topic, p, OFFSET_END) for p in partitions]
        ms = int(since.timestamp() * 1000)
        wanted = [TopicPartition(self.topic, p, ms) for p in partitions]
        # A partition with nothing at or after `since` answers OFFSET_END (-1): reading it from the end
        # is what we want.
        return consumer.offsets_for_times(wanted, timeout=10)

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        consumer = self._consumer()
        watch: TopicWatch | None = None
        try:
            assignment = self._assignment(consumer)
            if not assignment:
                return
            watch = TopicWatch(self.bootstrap, [self.topic], self.options.topic_check_s).start()
            topic_id = watch.current(self.topic)
            consumer.assign(assignment)
            self.started_at = datetime.now(UTC)
            loop.call_soon_threadsafe(self.ready.set)
            log.info("monitor stream: following %d partition(s) of %s", len(assignment), self.topic)
            while not self._stop.is_set():
                payloads = self._poll(consumer)
                if payloads:
                    loop.call_soon_threadsafe(self.publish, payloads)
                now_id = watch.current(self.topic)
                if now_id is not None and now_id != topic_id:
                    if topic_id is not None:
                        self._follow_recreated(consumer, f"id {topic_id} -> {now_id}")
                    topic_id = now_id
        except Exception as e:  # a dead consumer must show on the page, not only in the log
            self.error = f"{type(e).__name__}: {e}"
            log.exception("monitor stream: the consumer stopped")
        finally:
            if watch is not None:
                watch.stop()
            with contextlib.suppress(Exception):
                consumer.close()

    def _follow_recreated(self, consumer: Consumer, why: str) -> None:
        """The topic was recreated (the broker came back empty): everything in the new topic is newer
        than what the clients saw, so read it from its beginning. The old position would wait, silently,
        until the new topic grew past it."""
        meta = consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
        partitions = sorted(meta.partitions) if meta is not None and meta.partitions else []
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        STREAM_RESETS.inc()
        log.warning("monitor stream: %s was recreated (%s); following the new topic from its beginning",
                    self.topic, why)  # fmt: skip

    def _poll(self, consumer: Consumer) -> list[bytes]:
        payloads: list[bytes] = []
        for msg in consumer.consume(500, self.options.poll_timeout_s):
            value = msg.value()
            if msg.error() is not None or not value:
                continue
            try:
                name = orjson.loads(value).get("event", "?")
            except (orjson.JSONDecodeError, AttributeError):
                log.warning("monitor stream: skipped a value that is not a JSON object")
                continue
            # The bytes go to the browsers as the dataflow encoded them (never decoded into models and
            # encoded again); the count is by the catalogue's event type (worktool/events.py).
            model = event_type(name) if isinstance(name, str) else None
            STREAM_EVENTS.labels(model.EVENT if model is not None else "unknown").inc()
            payloads.append(value)
        return payloads


async def _hub(request: Request) -> MonitorHub:
    """The app's hub, started on first use (an app that nobody watches keeps no consumer)."""
    app = request.app
    async with app.state.monitor_lock:
        hub: MonitorHub | None = app.state.monitor_hub
        if hub is None:
            settings = app.state.settings
            if not settings.kafka_bootstrap_servers:
                raise HTTPException(503, "the monitor stream needs KAFKA_BOOTSTRAP_SERVERS")
            options = getattr(app.state, "monitor_options", None) or MonitorOptions()
            hub = MonitorHub(settings.kafka_bootstrap_servers, settings.topic_monitor, options)
            hub.start()
            app.state.monitor_hub = hub
    return hub


async def sse_stream(hub: MonitorHub, request: Request) -> AsyncIterator[bytes]:
    sub = hub.subscribe()  # before waiting for the assignment: nothing read after it is missed
    try:
        yield b"retry: 3000\n\n"
        while not hub.ready.is_set():
            if hub.error:
                yield b"event: error\ndata: " + orjson.dumps({"detail": hub.error}) + b"\n\n"
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hub.ready.wait(), hub.options.keepalive_s)
            if not hub.ready.is_set():
                yield b": waiting for the broker\n\n"
        ready = {"started_at": hub.started_at.isoformat() if hub.started_at else None}
        yield b"event: ready\ndata: " + orjson.dumps(ready) + b"\n\n"
        while True:
            try:
                frame = await asyncio.wait_for(sub.queue.get(), hub.options.keepalive_s)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": keep-alive\n\n"
                continue
            if frame is None:
                yield b'event: dropped\ndata: {"detail": "too slow: reconnect"}\n\n'
                return
            yield frame
    finally:
        hub.unsubscribe(sub)


# ---------------------------------------------------------------------------------------------
# The state from PostgreSQL


STATE_QUERIES: dict[str, str] = {
    # Active: a message in the last hour, or a session that staff still hold.
    "sessions": """
        SELECT session_id, group_name, user_name, is_group, status, ai_paused, staff_active_until,
               last_message_at, message_count
        FROM sessions
        WHERE last_message_at >= now() - %(window)s OR status <> 'auto' OR ai_paused
        ORDER BY last_message_at DESC NULLS LAST LIMIT 1000""",
    "alerts": """
        SELECT alert_id, alert_type, alert_key, session_id, user_name, group_name, robot_id,
               alert_level AS level, status, escalation_count, escalation_history, cancel_reason,
               cancelled_at, cancelled_by, raised_at, last_triggered_at, trigger_count, message_id,
               message_content, parent_alert_id, notified_at, version
        FROM alert_history
        WHERE status IN ('open', 'escalated') OR coalesce(cancelled_at, raised_at) >= now() - %(window)s
        ORDER BY raised_at DESC LIMIT 1000""",
    "interventions": """
        SELECT message_id, session_id, sender_name AS user_name, intervention_reason AS reason,
               received_at AS at, content
        FROM session_messages
        WHERE is_staff_intervention AND received_at >= now() - %(window)s
        ORDER BY received_at DESC LIMIT 200""",
    "commands": """
        SELECT command_id, robot_id, channel, status, cause_event, cause_id, target, due_at,
               created_at AS at
        FROM robot_commands
        WHERE created_at >= now() - interval '24 hours' OR status IN ('pending', 'sent', 'timeout')
        ORDER BY created_at DESC LIMIT 2000""",
    "robots": """
        SELECT robot_id, name, role, status, last_seen_at, last_status_at, send_failure_count,
               consecutive_failure_count, health_score, health_status
        FROM robots ORDER BY robot_id""",
    "classified": """
        SELECT message_id, session_id, received_at AS at, sender_type, message_type, decided_by
        FROM session_messages
        WHERE received_at >= now() - %(window)s AND NOT is_echo AND sender_type IS NOT NULL
        ORDER BY received_at DESC LIMIT 20000""",
    "ai_calls": """
        SELECT call_id, called_at AS at, status, request_duration_ms AS latency_ms, provider, model_id,
               operation_type, error_message
        FROM ai_io_logs
        WHERE called_at >= now() - %(window)s
        ORDER BY called_at DESC LIMIT 5000""",
}


async def read_state(pool: AsyncConnectionPool) -> dict[str, Any]:
    """Every list the page shows, read in one snapshot (REPEATABLE READ) so they agree."""
    state: dict[str, Any] = {}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute("SELECT now() AS now")
            row = await cur.fetchone()
            state["now"] = row["now"] if row else datetime.now(UTC)
            for name, sql in STATE_QUERIES.items():
                await cur.execute(sql, {"window": STATE_WINDOW})  # type: ignore[arg-type]
                state[name] = await cur.fetchall()
    state["window_s"] = int(STATE_WINDOW.total_seconds())
    state["names"] = {"levels": LEVEL_NAMES, "alert_types": TYPE_NAMES, "cancel_reasons": CANCEL_NAMES}
    return state


def _json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS)


# ---------------------------------------------------------------------------------------------
# Routes


def _static(name: str) -> bytes:
    return resources.files("console").joinpath("static", name).read_bytes()


def monitor_router(authenticate: Callable[..., Any]) -> APIRouter:
    """The page and its files are public (the page holds no data); /metrics needs the metrics token
    (WORKTOOL_METRICS_TOKEN, when set); the state and the stream need what `authenticate` accepts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.monitor_hub = None
        app.state.monitor_lock = asyncio.Lock()
        try:
            yield
        finally:
            hub: MonitorHub | None = app.state.monitor_hub
            if hub is not None:
                await hub.stop()

    router = APIRouter(lifespan=lifespan)
    protected = [Depends(authenticate)]

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-cache"})

    @router.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in STATIC_FILES:  # a fixed list: no path from the URL reaches the file system
            raise HTTPException(404, "no such file")
        return Response(_static(name), media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    @router.get("/api/monitor/state", dependencies=protected, tags=["monitor"])
    async def monitor_state(request: Request) -> Response:
        """Sessions active in the last hour, open alerts (and those closed in the last hour),
        interventions, commands, robots, classifications and LLM calls of the last hour."""
        try:
            state = await read_state(request.app.state.pool)
        except Exception as e:  # the pool's timeout or a lost connection: the page retries
            log.warning("monitor state: database error: %s", type(e).__name__)
            raise HTTPException(503, "the database did not answer") from e
        return Response(_json(state), media_type="application/json")

    @router.get("/api/monitor/stream", dependencies=protected, tags=["monitor"])
    async def monitor_stream(request: Request) -> StreamingResponse:
        """Server-sent events: `data:` one monitor event (docs/events.md); `event: ready` once the
        consumer follows every partition; `event: dropped` when this client fell behind."""
        hub = await _hub(request)
        return StreamingResponse(
            sse_stream(hub, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        auth = MetricsAuth(request.app.state.settings.metrics_token)
        if not auth.allows(request.headers.get("authorization")):
            return Response(UNAUTHORIZED_BODY, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router


__all__ = ["MonitorHub", "MonitorOptions", "monitor_router", "read_state", "sse_frame"]
