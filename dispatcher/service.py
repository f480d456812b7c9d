"""The dispatcher loop: consume worktool.commands → hold each command until its due time → batch the due
commands of one robot → claim them → send (under the shared rate limit) → record the answer on
worktool.raw → mark the claims done → commit the finished offsets.

Single-threaded on purpose: a rebalance or a stop is only seen between two requests, when nothing is in
flight, so every request that was started is also recorded and committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import httpx
import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from pydantic import ValidationError

from dispatcher import metrics
from dispatcher.claims import Claim, ClaimStore
from dispatcher.held import Held, HeldCommands, Route
from dispatcher.offsets import OffsetTracker, Partition
from dispatcher.ratelimit import RedisRateLimiter
from dispatcher.recorder import AcceptedRecorder
from dispatcher.sender import Outcome, RetryPolicy, Sender
from dispatcher.wire import ERROR_NOT_SENDABLE, ERROR_OUTCOME_UNKNOWN
from infra.kafka_clients import KafkaClients
from worktool.models import AcceptedBody, CommandChannel, CommandRecord, summarize_errors
from worktool.settings import Settings

log = logging.getLogger("worktool.dispatcher")

# robot_id of the accepted record of a WeCom command that names no robot (nothing was sent).
NO_ROBOT = "dispatcher:unassigned"
RESTART_REASON = "outcome unknown after a dispatcher restart; check manually"
CONSUME_BATCH = 500
MAX_HELD = 20_000  # commands held in memory before the consumer pauses
IDLE_POLL_S = 0.5


def route_of(command: CommandRecord, settings: Settings) -> Route:
    if command.channel == "wecom":
        if not command.robot_id:
            return Route("not_sendable", "wecom", NO_ROBOT, "no robot_id: no robot to send this WeCom text")
        return Route("worktool", "wecom", command.robot_id)
    robot_id = f"webhook:{command.channel}"
    if not webhook_url(command.channel, settings):
        setting = f"WORKTOOL_{command.channel.upper()}_WEBHOOK_URL"
        return Route(
            "not_sendable", command.channel, robot_id, f"{setting} is not set: no {command.channel} webhook"
        )
    return Route("webhook", command.channel, robot_id)


def webhook_url(channel: CommandChannel, settings: Settings) -> str | None:
    """Where a robot-less channel posts: the phone and SMS webhooks, Feishu's custom bot; None when unset."""
    urls = {
        "phone": settings.phone_webhook_url,
        "sms": settings.sms_webhook_url,
        "feishu": settings.feishu_webhook_url if settings.feishu_configured else None,
    }
    return urls.get(channel)


def consumer_config(settings: Settings) -> dict[str, object]:
    """The dispatcher role of the Kafka client factory (infra/kafka_clients.py): the group
    WORKTOOL_DISPATCHER_GROUP, committed only after the outcome is on worktool.raw, earliest, a short
    session timeout (Tansu takes about half of it to let a member join)."""
    assert settings.kafka_bootstrap_servers
    return KafkaClients(settings).consumer_config("dispatcher")


class Dispatcher:
    def __init__(self, settings: Settings, stop: threading.Event | None = None) -> None:
        if not (settings.kafka_bootstrap_servers and settings.redis_url):
            raise ValueError("the dispatcher needs KAFKA_BOOTSTRAP_SERVERS and REDIS_URL")
        self._settings = settings
        self._stop = stop or threading.Event()
        self._redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._claims = ClaimStore(self._redis, settings.dispatch_claim_ttl_s)
        self._limiter = RedisRateLimiter(
            self._redis,
            settings.dispatch_rate_key,
            settings.dispatch_rate_requests,
            settings.dispatch_rate_window_s,
            settings.dispatch_rate_margin_s,
        )
        self._http = httpx.Client(
            timeout=settings.dispatch_timeout_s, headers={"User-Agent": "worktool-dispatcher"}
        )
        policy = RetryPolicy(
            settings.dispatch_max_tries, settings.dispatch_backoff_s, settings.dispatch_max_backoff_s
        )
        self._sender = Sender(self._http, settings.api_base_url, policy, self._limiter)
        self._recorder = AcceptedRecorder(
            settings.kafka_bootstrap_servers, settings.topic_raw, settings.limits
        )
        self._consumer = KafkaClients(settings).consumer("dispatcher")
        self._offsets = OffsetTracker()
        self._held = HeldCommands()
        self._paused = False
        self._token_free_at = 0.0  # monotonic: the limiter said no token before this
        self._waiting_since: float | None = None

    # -- loop --------------------------------------------------------------------------------------

    def run(self) -> None:
        topic = self._settings.topic_commands
        self._consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        log.info("dispatcher started", extra={"fields": {"event": "started", "topic": topic}})
        try:
            while not self._stop.is_set():
                self._poll(self._poll_timeout())
                self._step()
        finally:
            self._close()

    def stop(self) -> None:
        self._stop.set()

    def _poll_timeout(self) -> float:
        now, mono = time.time(), time.monotonic()
        route = self._held.next_due_route(now)
        if route is not None:
            if route.needs_token and mono < self._token_free_at:
                return min(IDLE_POLL_S, self._token_free_at - mono)
            return 0.0
        next_due = self._held.next_due_time()
        if next_due is None:
            return IDLE_POLL_S
        return max(0.0, min(IDLE_POLL_S, next_due - now))

    def _step(self) -> None:
        """Send at most one request, so that the loop polls (and sees a stop) between requests."""
        now = time.time()
        route = self._held.next_due_route(now)
        if route is None:
            self._waiting_since = None
            return
        token_held = False
        if route.needs_token:
            mono = time.monotonic()
            if mono < self._token_free_at:
                return
            wait = self._limiter.try_acquire()
            if wait > 0:
                # Keep consuming while waiting: what arrives meanwhile joins the batch.
                self._waiting_since = self._waiting_since or mono
                self._token_free_at = mono + wait
                return
            metrics.RATE_LIMIT_WAIT.observe(mono - (self._waiting_since or mono))
            self._waiting_since = None
            token_held = True
            now = time.time()
        limit = 1 if route.kind == "webhook" else self._settings.dispatch_batch_size
        self._handle(route, self._held.take(route, now, limit), token_held)

    # -- holding commands until due ----------------------------------------------------------------

    def _poll(self, timeout: float) -> None:
        messages = self._consumer.consume(num_messages=CONSUME_BATCH, timeout=timeout)
        skipped = False
        for message in messages:
            if message.error():
                if message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", message.error())
                continue
            partition = (message.topic(), message.partition())
            self._offsets.read(partition, message.offset())
            if not self._hold(message, partition):
                self._offsets.finished(partition, message.offset())
                skipped = True
        if skipped:
            self._commit()
        self._pause_or_resume()

    def _hold(self, message: Message, partition: Partition) -> bool:
        try:
            command = CommandRecord.model_validate_json(message.value() or b"")
        except ValidationError as e:
            # Never dropped silently, never logged with its content.
            metrics.COMMANDS.labels("unknown", "invalid").inc()
            log.error(
                "invalid command record skipped",
                extra={
                    "fields": {
                        "event": "invalid",
                        "partition": partition[1],
                        "offset": message.offset(),
                        "error": summarize_errors(e),
                    }
                },
            )
            return False
        route = route_of(command, self._settings)
        held = Held(command, partition, message.offset(), command.due_time.timestamp(), route)
        if not self._held.add(held):  # the dataflow writes at least once
            metrics.COMMANDS.labels(command.channel, "duplicate").inc()
            return False
        return True

    def _pause_or_resume(self) -> None:
        if not self._paused and len(self._held) >= MAX_HELD:
            self._consumer.pause(self._consumer.assignment())
            self._paused = True
        elif self._paused and len(self._held) < MAX_HELD // 2:
            self._consumer.resume(self._consumer.assignment())
            self._paused = False

    # -- one request -------------------------------------------------------------------------------

    def _handle(self, route: Route, batch: list[Held], token_held: bool) -> None:
        claims = self._claims.claim([h.command_id for h in batch])
        self._settle_earlier_claims(route, batch, claims)
        fresh = [h for h in batch if claims[h.command_id].state == "new"]
        if fresh:
            outcome = self._send(route, fresh, token_held)
            body = AcceptedBody(
                messageId=outcome.message_id,
                commandIds=[h.command_id for h in fresh],
                errorCode=outcome.error_code,
                errorReason=outcome.error_reason,
                channel=route.channel,
            )
            ids = body.commandIds
            if route.kind != "not_sendable":
                self._claims.answered(ids, body.model_dump_json().encode())
            self._recorder.record(route.robot_id, body, self._stop.is_set)
            self._claims.done(ids)
            self._log_request(route, ids, outcome)
            metrics.COMMANDS.labels(route.channel, _command_outcome(route, outcome)).inc(len(ids))
        self._held.release(h.command_id for h in batch)
        for h in batch:
            self._offsets.finished(h.partition, h.offset)
        self._commit()

    def _send(self, route: Route, fresh: Sequence[Held], token_held: bool) -> Outcome:
        if route.kind == "not_sendable":
            return Outcome("failed", error_code=ERROR_NOT_SENDABLE, error_reason=route.reason)
        if route.kind == "worktool":
            metrics.BATCH_SIZE.observe(len(fresh))
            return self._sender.send_texts(route.robot_id, [h.command for h in fresh], token_held)
        url = webhook_url(route.channel, self._settings)
        assert url is not None  # routed as a webhook only when set
        if route.channel == "feishu":
            return self._sender.send_feishu(url, self._settings.feishu_secret, fresh[0].command)
        return self._sender.send_webhook(route.channel, url, fresh[0].command)

    def _settle_earlier_claims(self, route: Route, batch: list[Held], claims: dict[str, Claim]) -> None:
        """Commands claimed before this request: by a dispatcher that died (or by a duplicate record)."""
        done = [h.command_id for h in batch if claims[h.command_id].state == "done"]
        if done:
            metrics.COMMANDS.labels(route.channel, "already_done").inc(len(done))
        unknown = [h.command_id for h in batch if claims[h.command_id].state == "sending"]
        if unknown:
            body = AcceptedBody(
                commandIds=unknown,
                errorCode=ERROR_OUTCOME_UNKNOWN,
                errorReason=RESTART_REASON,
                channel=route.channel,
            )
            self._recorder.record(route.robot_id, body, self._stop.is_set)
            self._claims.done(unknown)
            metrics.COMMANDS.labels(route.channel, "unknown").inc(len(unknown))
            log.warning(
                "outcome unknown after a restart",
                extra={
                    "fields": {
                        "event": "unknown_after_restart",
                        "robot": route.robot_id,
                        "command_ids": unknown,
                    }
                },
            )
        answered = {claims[h.command_id] for h in batch if claims[h.command_id].state == "answered"}
        for claim in answered:
            # Answered before a crash, maybe not recorded: record that same answer (again).
            stored = self._claims.answer_body(claim)
            if stored is None:  # expired with its claim's TTL: nothing left to tell
                continue
            body = AcceptedBody.model_validate_json(stored)
            self._recorder.record(route.robot_id, body, self._stop.is_set)
            self._claims.done(body.commandIds)
            log.info(
                "answer recorded after a restart",
                extra={
                    "fields": {"event": "rerecorded", "robot": route.robot_id, "command_ids": body.commandIds}
                },
            )

    def _log_request(self, route: Route, command_ids: list[str], outcome: Outcome) -> None:
        fields = {
            "event": "request",
            "robot": route.robot_id,
            "channel": route.channel,
            "commands": len(command_ids),
            "command_ids": command_ids,
            "status": outcome.status,
            "http_status": outcome.http_status,
            "message_id": outcome.message_id,
            "error_code": outcome.error_code,
            "error_reason": outcome.error_reason,
            "tries": outcome.tries,
            "latency_ms": round(outcome.seconds * 1000, 1),
        }
        metrics.REQUEST_SECONDS.labels(route.channel).observe(outcome.seconds)
        level = logging.INFO if outcome.status == "accepted" else logging.WARNING
        log.log(level, "request", extra={"fields": fields})

    # -- offsets and rebalances --------------------------------------------------------------------

    def _commit(self) -> None:
        positions = self._offsets.committable()
        if not positions:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()], asynchronous=False
            )
        except KafkaException as e:  # e.g. a rebalance in progress: the next commit carries it
            log.warning("offset commit failed: %s", e)
            return
        self._offsets.committed(positions)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._paused = False
        log.info(
            "partitions assigned",
            extra={"fields": {"event": "assigned", "partitions": sorted(p.partition for p in partitions)}},
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Nothing is in flight here (see the module docstring): commit what is finished and forget what
        is held; the partitions' next owner reads it again from the commit."""
        self._commit()
        gone = {(p.topic, p.partition) for p in partitions}
        self._held.drop_partitions(gone)
        self._offsets.forget(gone)
        log.info(
            "partitions revoked",
            extra={"fields": {"event": "revoked", "partitions": sorted(p for _, p in gone)}},
        )

    def _close(self) -> None:
        try:
            self._commit()
            self._consumer.close()
        finally:
            self._recorder.close()
            self._http.close()
            self._redis.close()
            log.info("dispatcher stopped", extra={"fields": {"event": "stopped"}})


def _command_outcome(route: Route, outcome: Outcome) -> str:
    if route.kind == "not_sendable":
        return "not_sendable"
    return outcome.status
