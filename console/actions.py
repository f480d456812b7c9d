"""Manual alert actions (cancel, escalate): the one implementation behind the console API and
`worktool alerts`.

An action is checked against `alert_history` and then written as a ControlRecord to the control topic;
nothing else is written here. The dataflow applies the record in order with everything else and updates
`alert_history` itself. The check is therefore a courtesy to the operator (a clear 404/409 now instead of
a silent no-op later): the alert may still close between the check and the dataflow applying the record,
and the dataflow re-checks when it applies it. Each record carries a fresh `request_id` so the dataflow
applies it once even if the producer's retry delivered it twice.

Entries: `perform_action` (synchronous: the CLI); the API (console/app.py) composes the same steps
with its audit row in one transaction. Both raise an `ActionError` whose `status` is the HTTP status to
answer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from confluent_kafka import KafkaError, KafkaException, Message
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pydantic import BaseModel, ConfigDict

from console import audit
from infra import kafka_clients
from worktool.logs import quiet_kafka_log
from worktool.models import ControlAction, ControlRecord, UtcDatetime, utc_now

log = logging.getLogger(__name__)
kafka_log = quiet_kafka_log("console.kafka", 10.0)  # librdkafka's own log lines


MAX_LEVEL = 4  # the escalation ceiling
CLOSED_STATUSES = frozenset({"cancelled", "resolved"})
# librdkafka notices a timed-out in-flight request only about once a second: wait that much longer for
# its own report before giving up on it.
DELIVERY_SLACK_S = 1.0

# ---------------------------------------------------------------------------------------------
# Outcomes


class ActionError(Exception):
    """An action that was not accepted; `status` is the HTTP status that says why."""

    status = 500

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class AlertNotFound(ActionError):
    status = 404


class AlertConflict(ActionError):
    """The alert's state does not allow the action (closed, or already at the ceiling)."""

    status = 409


class ServiceUnavailable(ActionError):
    """The database or the broker did not answer; nothing was accepted."""

    status = 503


@dataclass(frozen=True, slots=True)
class Accepted:
    """A control record the broker acknowledged."""

    record: ControlRecord
    key: str
    topic: str
    partition: int
    offset: int


# ---------------------------------------------------------------------------------------------
# The alert as alert_history stores it


class AlertRow(BaseModel):
    """One row of alert_history (migrations/0001)."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    alert_type: str
    alert_key: str
    session_id: str | None
    user_name: str | None
    group_name: str | None
    robot_id: str | None
    alert_level: int
    status: Literal["open", "escalated", "cancelled", "resolved"]
    message_id: str | None
    message_content: str | None
    alert_message: str | None
    notification_status: str
    escalation_count: int
    escalation_history: list[dict[str, Any]]
    cancel_reason: str | None
    cancelled_at: UtcDatetime | None
    raised_at: UtcDatetime
    last_triggered_at: UtcDatetime | None
    handled_by: str | None
    handled_at: UtcDatetime | None
    parent_alert_id: str | None
    trigger_count: int
    cancelled_by: str | None
    notified_at: UtcDatetime | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


SELECT_ALERT = f"SELECT {', '.join(AlertRow.model_fields)} FROM alert_history WHERE alert_id = %s"


def fetch_alert(conn: psycopg.Connection[Any], alert_id: str) -> AlertRow | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(SELECT_ALERT, (alert_id,)).fetchone()
    return None if row is None else AlertRow.model_validate(row)


async def fetch_alert_async(conn: psycopg.AsyncConnection[Any], alert_id: str) -> AlertRow | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(SELECT_ALERT, (alert_id,))
        row = await cur.fetchone()
    return None if row is None else AlertRow.model_validate(row)


# ---------------------------------------------------------------------------------------------
# Checking and building (pure)


def check_action(alert: AlertRow | None, alert_id: str, action: ControlAction) -> AlertRow:
    """The alert, if `action` may be requested on it; raises AlertNotFound / AlertConflict otherwise."""
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    if alert.status in CLOSED_STATUSES:
        raise AlertConflict(f"alert {alert_id} is already {alert.status}")
    if action == "escalate_alert" and alert.alert_level >= MAX_LEVEL:
        raise AlertConflict(
            f"alert {alert_id} is at level {alert.alert_level}: level {MAX_LEVEL} is the ceiling"
        )
    return alert


def control_key(alert: AlertRow) -> str:
    """The record's Kafka key: the key the dataflow keeps the alert's state under (its session, or its
    robot for a robot alert), so the action lands in order with that state's other records."""
    if alert.session_id:
        return alert.session_id
    if alert.robot_id:
        return f"robot:{alert.robot_id}"
    return f"alert:{alert.alert_id}"  # not produced by the rules; still deterministic


def build_control_record(
    alert: AlertRow, action: ControlAction, *, actor: str, reason: str, at: datetime | None = None
) -> ControlRecord:
    return ControlRecord(
        action=action,
        at=at or utc_now(),
        actor=actor,
        reason=reason,
        request_id=str(uuid.uuid4()),
        alert_id=alert.alert_id,
        session_id=alert.session_id,
        robot_id=alert.robot_id,
    )


# ---------------------------------------------------------------------------------------------
# Producing


class ControlProducer:
    """Writes control records and waits for the broker's acknowledgement (acks=all).

    Thread-safe and blocking; the API calls it from worker threads. Not idempotent on purpose: an
    idempotent producer that saw the broker restart can stay failed for good (the gateway measured this
    against Tansu), while a plain one reconnects; a retry's duplicate carries the same request_id, and
    one request in flight per connection keeps records in order."""

    def __init__(self, bootstrap_servers: str, topic: str, *, timeout_s: float):
        self.topic = topic
        self.timeout_s = timeout_s
        # The control role (infra/kafka_clients.py): acks=all, not idempotent, one request in flight,
        # linger 0, no topic auto-creation (topics are created by infra.kafka_admin).
        self._producer = kafka_clients.producer(
            "control", bootstrap_servers, message_timeout_s=timeout_s, logger=kafka_log
        )

    def send(self, record: ControlRecord, key: str) -> Accepted:
        done = threading.Event()
        report: dict[str, Any] = {}

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            report.update(err=err, msg=msg)
            done.set()

        try:
            self._producer.produce(self.topic, record.to_json(), key.encode(), on_delivery=on_delivery)
        except (BufferError, KafkaException) as e:
            raise ServiceUnavailable(f"the broker refused the control record: {e}") from e
        deadline = time.monotonic() + self.timeout_s + DELIVERY_SLACK_S
        while not done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceUnavailable(self._unanswered())
            self._producer.poll(min(0.1, remaining))  # serves any thread's reports; ours sets `done`
        err: KafkaError | None = report["err"]
        if err is not None:
            if err.code() == KafkaError._MSG_TIMED_OUT:
                raise ServiceUnavailable(self._unanswered())
            raise ServiceUnavailable(f"the broker did not accept the control record: {err.str()}")
        msg: Message = report["msg"]
        return Accepted(
            record=record, key=key, topic=self.topic, partition=msg.partition(), offset=msg.offset()
        )

    def _unanswered(self) -> str:
        return (
            f"the broker did not acknowledge the control record within {self.timeout_s:g} s "
            f"(topic {self.topic}); it may still arrive: check the alert before retrying"
        )

    def close(self, timeout_s: float = 5.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("closing the control producer with %d unacknowledged records", remaining)


# ---------------------------------------------------------------------------------------------
# Entries


def log_accepted(accepted: Accepted) -> None:
    r = accepted.record
    log.info(
        "%s of alert %s by %s accepted (request %s, %s[%d]@%d)",
        r.action, r.alert_id, r.actor, r.request_id, accepted.topic, accepted.partition, accepted.offset,
    )  # fmt: skip


def perform_action(
    database_url: str,
    producer: ControlProducer,
    alert_id: str,
    action: ControlAction,
    *,
    actor: str,
    reason: str,
    connect_timeout_s: float = 5.0,
) -> tuple[AlertRow, Accepted]:
    """Check the alert in `database_url`, then write and await the control record (blocking)."""
    try:
        with psycopg.connect(database_url, connect_timeout=max(1, round(connect_timeout_s))) as conn:
            row = fetch_alert(conn, alert_id)
    except psycopg.OperationalError as e:
        raise ServiceUnavailable(f"cannot read alert_history: {e}") from e
    alert = check_action(row, alert_id, action)
    accepted = producer.send(
        build_control_record(alert, action, actor=actor, reason=reason), control_key(alert)
    )
    log_accepted(accepted)
    return alert, accepted


async def read_alert_async(pool: AsyncConnectionPool, alert_id: str) -> AlertRow | None:
    try:
        async with pool.connection() as conn:
            return await fetch_alert_async(conn, alert_id)
    except (PoolTimeout, psycopg.OperationalError) as e:
        raise ServiceUnavailable(f"cannot read alert_history: {e}") from e


async def send_audited(
    producer: ControlProducer,
    conn: Any,
    record: ControlRecord,
    key: str,
    entry: audit.AuditEntry,
) -> Accepted:
    """The audit row and the control record in one transaction,
    committed once the broker acknowledged the record: a refused or unacknowledged action leaves no audit
    row. The one implementation behind the alert actions and the task endpoints."""
    async with conn.transaction():
        await audit.record(conn, entry)
        accepted = await asyncio.to_thread(producer.send, record, key)
    log_accepted(accepted)
    return accepted
