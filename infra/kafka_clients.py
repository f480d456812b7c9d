"""The one place that configures and creates Kafka clients (confluent_kafka Producer, Consumer,
AdminClient) and the bytewax KafkaSource's consumer settings.

Every producer, consumer and admin client of the product goes through `producer`, `consumer`, `admin`
(or `source_config` for bytewax's KafkaSource, which creates its consumer itself); a test
(tests/infra/test_kafka_clients.py) scans the source tree for any other construction. A client's
configuration is the settings every client shares (`COMMON`, `PRODUCER_COMMON`, `CONSUMER_COMMON`)
plus the deliberate options of its *role*:

producers
    gateway   the webhook's durable ack: idempotent, acks=all, linger.ms=2 (measured 1-5 ms, benchmarks
              "Webhook"), message.timeout.ms = WORKTOOL_PRODUCE_TIMEOUT_S (1.5 s) so a record that cannot
              be delivered is spooled within WorkTool's 3-s answer window.
    sink      the dataflow's Kafka sinks (monitor, commands, DLQ): idempotent, acks=all, linger.ms=5,
              lz4, message.timeout.ms=10 s (an outage shows up and is waited out by the sink instead
              of records sitting in librdkafka's queue for its default five minutes). The sinks' writer
              (sinks/kafka.py: KafkaWriter) adds delivery.report.only.error and its one callback: only
              failures cost a Python call.
    recorder  the dispatcher's accepted records: idempotent, acks=all, linger.ms=0 (one record, waited
              for), message.timeout.ms=5000 (a stuck producer after a broker restart is replaced within
              5 s). Leaves librdkafka's allow.auto.create.topics as it is (as before this factory).
    control   operators' control records (console, `worktool alerts`): NOT idempotent (an idempotent
              producer that saw the broker restart can stay failed; a retry's duplicate carries the
              same request_id), max.in.flight=1 (order), linger.ms=0, message.timeout.ms =
              WORKTOOL_API_PRODUCE_TIMEOUT_S.
    loader    tools and benchmarks that bulk-load a topic: idempotent, acks=all, linger.ms=5.

consumers
    dataflow        bytewax's KafkaSource (`source_config`, string values): assign() only, short
                    session timeout (Tansu joins groups slowly), fetch.wait.max.ms=10 (latency),
                    auto.offset.reset=error (a lost position is reported to GuardedKafkaSource, which
                    re-reads the partition loudly instead of librdkafka jumping to the end).
    dispatcher      a consumer group (WORKTOOL_DISPATCHER_GROUP), manual commits after the outcome is
                    on worktool.raw, earliest, short session timeout and heartbeat for Tansu.
    monitor_stream  the console's live stream: assign() only with a throw-away group id, nothing stored
                    or committed, fetch.wait.max.ms=100, socket.timeout.ms=10 s.
    archive         `worktool archive`/replay dumps: reads to partition EOF, no commits.
    tool            one-off readers (`worktool demo` counts, the offset check): no commits.

admin: one role, `admin`; never creates a topic from a metadata request.

Why allow.auto.create.topics=false almost everywhere: a metadata request would make Tansu create a
missing topic with one partition, which can never be fixed; topics are created by infra.kafka_admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from worktool.logs import quiet_kafka_log
from worktool.settings import RecordLimits, Settings

Kind = Literal["producer", "consumer", "admin"]

# Every client.
COMMON: dict[str, Any] = {
    # Reconnect quickly after a broker restart (librdkafka: 100 ms growing to 10 s).
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 1000,
    "log.connection.close": False,  # the embedded broker closes idle connections: not news
}
PRODUCER_COMMON: dict[str, Any] = {"acks": "all"}
CONSUMER_COMMON: dict[str, Any] = {"enable.auto.commit": False}
NO_AUTO_CREATE: dict[str, Any] = {"allow.auto.create.topics": False}


@dataclass(frozen=True)
class Role:
    """A kind of client and its deliberate options (see the module doc for why)."""

    name: str
    kind: Kind
    options: Mapping[str, Any]
    log_name: str | None = None  # librdkafka's log lines go to this Python logger (rate-limited)
    log_interval_s: float = 10.0
    group_id: str | None = None  # consumers: the group id (assign() only unless the role says so)
    settings_timeout: str | None = None  # producers: the Settings field (seconds) of message.timeout.ms
    extra: Mapping[str, Any] = field(default_factory=dict)


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role(
            "gateway",
            "producer",
            {"enable.idempotence": True, "linger.ms": 2, **NO_AUTO_CREATE},
            log_name="gateway.kafka",
            settings_timeout="produce_timeout_s",
        ),
        Role(
            "sink",
            "producer",
            {
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
                "message.timeout.ms": 10_000,
                **NO_AUTO_CREATE,
            },
            log_name="sinks.kafka.librdkafka",
            log_interval_s=30.0,
        ),
        Role(
            "recorder",
            "producer",
            {"enable.idempotence": True, "linger.ms": 0, "message.timeout.ms": 5000},
        ),
        Role(
            "control",
            "producer",
            {
                "enable.idempotence": False,
                "max.in.flight.requests.per.connection": 1,
                "linger.ms": 0,
                **NO_AUTO_CREATE,
            },
            log_name="console.kafka",
            settings_timeout="api_produce_timeout_s",
        ),
        Role("loader", "producer", {"enable.idempotence": True, "linger.ms": 5, **NO_AUTO_CREATE}),
        Role(
            "dataflow",
            "consumer",
            {
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 10,
                "auto.offset.reset": "error",
            },
        ),
        Role(
            "dispatcher",
            "consumer",
            {
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 300000,
            },
        ),
        Role(
            "monitor_stream",
            "consumer",
            {
                "enable.auto.offset.store": False,
                "session.timeout.ms": 6000,
                "fetch.wait.max.ms": 100,
                "socket.timeout.ms": 10000,
            },
            group_id="worktool-console-{uuid}",
        ),
        Role("archive", "consumer", {"enable.partition.eof": True}, group_id="worktool-archive"),
        Role("tool", "consumer", {}, group_id="worktool-tool"),
        Role("admin", "admin", dict(NO_AUTO_CREATE)),
    )
}


def _role(name: str, kind: Kind) -> Role:
    role = ROLES.get(name)
    if role is None or role.kind != kind:
        raise ValueError(
            f"no {kind} role {name!r} (known: {', '.join(r for r in ROLES if ROLES[r].kind == kind)})"
        )
    return role


def producer_config(
    role: str,
    bootstrap: str,
    *,
    limits: RecordLimits | None = None,
    message_timeout_s: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The configuration of a producer of `role`. `limits`: message.max.bytes for the largest record
    any stage writes (the same for every producer and topic); `message_timeout_s` overrides the role's."""
    r = _role(role, "producer")
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": f"worktool-{role}",
        **COMMON,
        **PRODUCER_COMMON,
        **r.options,
    }
    if limits is not None:
        config["message.max.bytes"] = limits.message_max_bytes
    if message_timeout_s is not None:
        config["message.timeout.ms"] = int(message_timeout_s * 1000)
    config.update(extra)
    return config


def consumer_config(
    role: str, bootstrap: str, *, group_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The configuration of a consumer of `role`; `group_id` overrides the role's."""
    r = _role(role, "consumer")
    group = group_id or (r.group_id or f"worktool-{role}").replace("{uuid}", uuid.uuid4().hex[:8])
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "client.id": f"worktool-{role}",
        "group.id": group,
        **COMMON,
        **CONSUMER_COMMON,
        **r.options,
    }
    config.update(extra)
    return config


def admin_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    r = _role("admin", "admin")
    return {"bootstrap.servers": bootstrap, "client.id": "worktool-admin", **COMMON, **r.options, **extra}


def source_config(**extra: Any) -> dict[str, str]:
    """`add_config` of bytewax's KafkaSource (the dataflow role): bytewax sets bootstrap.servers,
    group.id and enable.auto.commit itself; values as strings, as it passes them on."""
    config = consumer_config("dataflow", "-")
    for key in ("bootstrap.servers", "group.id", "enable.auto.commit"):
        config.pop(key)
    config.update(extra)
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in config.items()}


def _with_logger(role: Role, config: dict[str, Any], logger: Any) -> dict[str, Any]:
    if logger is None and role.log_name is not None:
        logger = quiet_kafka_log(role.log_name, role.log_interval_s)
    return {**config, "logger": logger} if logger is not None else config


def producer(
    role: str,
    bootstrap: str,
    *,
    error_cb: Callable[[Any], None] | None = None,
    logger: Any = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Producer:
    """A new producer of `role` (`options` as for `producer_config`, or a ready `config`)."""
    r = _role(role, "producer")
    conf = dict(config) if config is not None else producer_config(role, bootstrap, **options)
    if error_cb is not None:
        conf["error_cb"] = error_cb
    return Producer(_with_logger(r, conf, logger))


def consumer(
    role: str,
    bootstrap: str,
    *,
    logger: Any = None,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Consumer:
    """A new consumer of `role` (`options` as for `consumer_config`, or a ready `config`: the
    dataflow's shared input consumer, configured as bytewax's KafkaSource configures its own)."""
    r = _role(role, "consumer")
    conf = dict(config) if config is not None else consumer_config(role, bootstrap, **options)
    return Consumer(_with_logger(r, conf, logger))


def admin(bootstrap: str, *, logger: Any = None, **extra: Any) -> AdminClient:
    conf = admin_config(bootstrap, **extra)
    return AdminClient({**conf, "logger": logger} if logger is not None else conf)


@dataclass(frozen=True)
class KafkaClients:
    """The factory bound to one Settings: bootstrap servers, record limits, produce timeouts, groups."""

    settings: Settings

    @property
    def bootstrap(self) -> str:
        if not self.settings.kafka_bootstrap_servers:
            raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
        return self.settings.kafka_bootstrap_servers

    def producer_config(self, role: str, **extra: Any) -> dict[str, Any]:
        r = _role(role, "producer")
        timeout = getattr(self.settings, r.settings_timeout) if r.settings_timeout else None
        extra.setdefault("message_timeout_s", timeout)
        return producer_config(
            role, self.settings.kafka_bootstrap_servers or "", limits=self.settings.limits, **extra
        )

    def consumer_config(self, role: str, **extra: Any) -> dict[str, Any]:
        if role == "dispatcher":
            extra.setdefault("group_id", self.settings.dispatcher_group)
        return consumer_config(role, self.settings.kafka_bootstrap_servers or "", **extra)

    def producer(self, role: str, *, error_cb: Callable[[Any], None] | None = None, **extra: Any) -> Producer:
        return producer(role, self.bootstrap, error_cb=error_cb, config=self.producer_config(role, **extra))

    def consumer(self, role: str, **extra: Any) -> Consumer:
        if role == "dispatcher":
            extra.setdefault("group_id", self.settings.dispatcher_group)
        return consumer(role, self.bootstrap, **extra)

    def admin(self, **extra: Any) -> AdminClient:
        return admin(self.bootstrap, **extra)


__all__ = [
    "ROLES",
    "KafkaClients",
    "Role",
    "admin",
    "admin_config",
    "consumer",
    "consumer_config",
    "producer",
    "producer_config",
    "source_config",
]
