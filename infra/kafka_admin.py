"""Topic administration: the one place that creates the Kafka topics.

Works against the embedded Tansu broker and a real Kafka cluster alike. Partition counts are final at
creation (Tansu cannot add partitions later), so `topic_plan` is the single source of them. Topics are
created with `max.message.bytes` of the configuration's RecordLimits (a real Kafka cluster's default is
1 MB, below the largest record the stages write); an existing topic that takes less is an error that
names the setting to change.
Run `python -m infra.kafka_admin` to create the topics named by the environment's Settings.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from infra import kafka_clients
from worktool.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 3


def topic_plan(settings: Settings) -> dict[str, int]:
    """Every topic the system uses, with its partition count."""
    plan = dict.fromkeys(settings.all_topics, DEFAULT_PARTITIONS)
    plan[settings.topic_raw] = settings.raw_partitions
    return plan


class TopicConfigError(RuntimeError):
    """An existing topic cannot take the records this configuration writes."""


def ensure_topics_for(settings: Settings, *, timeout_s: float = 30.0) -> None:
    """`ensure_topics` for every topic of `settings`, sized for its record limits."""
    if not settings.kafka_bootstrap_servers:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS is not set")
    ensure_topics(
        settings.kafka_bootstrap_servers,
        topic_plan(settings),
        max_message_bytes=settings.limits.message_max_bytes,
        timeout_s=timeout_s,
    )


def ensure_topics(
    bootstrap: str,
    topics: dict[str, int],
    *,
    replication_factor: int = 1,
    max_message_bytes: int | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Create the missing topics and wait until the broker lists every one with its partitions.
    An existing topic is left as it is (a warning if its partition count differs). With
    `max_message_bytes`, new topics take records that large and an existing topic that takes less
    raises TopicConfigError."""
    admin = kafka_clients.admin(bootstrap)
    deadline = time.monotonic() + timeout_s
    existing = admin.list_topics(timeout=timeout_s).topics
    for name, want in topics.items():
        if name in existing and len(existing[name].partitions) != want:
            log.warning("topic %s has %d partitions, not %d; leaving it as it is",
                        name, len(existing[name].partitions), want)  # fmt: skip

    config = {"max.message.bytes": str(max_message_bytes)} if max_message_bytes else {}
    if max_message_bytes:
        _check_record_size(admin, [n for n in topics if n in existing], max_message_bytes, timeout_s)
    missing = [NewTopic(name, num_partitions=n, replication_factor=replication_factor, config=config)
               for name, n in topics.items() if name not in existing]  # fmt: skip
    if missing:
        futures = admin.create_topics(missing, operation_timeout=timeout_s, request_timeout=timeout_s)
        for name, future in futures.items():
            try:
                future.result(timeout=max(1.0, deadline - time.monotonic()))
                log.info("created topic %s (%d partitions)", name, topics[name])
            except KafkaException as e:
                # Another process created it in the meantime: fine.
                if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    # Creation is acknowledged before every broker's metadata shows the topic.
    while True:
        listed = admin.list_topics(timeout=max(1.0, deadline - time.monotonic())).topics
        pending = [n for n in topics if n not in listed or not listed[n].partitions or listed[n].error]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s:.0f} s: {', '.join(pending)}")
        time.sleep(0.1)


def _check_record_size(admin: AdminClient, names: list[str], needed: int, timeout_s: float) -> None:
    if not names:
        return
    futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
    too_small = []
    for resource, future in futures.items():
        try:
            entry = future.result(timeout=timeout_s).get("max.message.bytes")
        except KafkaException as e:  # a broker that does not describe configs: nothing to compare
            log.warning("could not read the configuration of topic %s: %s", resource.name, e)
            continue
        if entry is not None and entry.value is not None and int(entry.value) < needed:
            too_small.append(f"{resource.name} ({entry.value})")
    if too_small:
        raise TopicConfigError(
            f"topics take smaller records than this configuration writes ({needed} bytes): "
            f"{', '.join(too_small)}; raise their max.message.bytes or lower WORKTOOL_MAX_BODY_BYTES"
        )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings()
    if not settings.kafka_bootstrap_servers:
        log.error("KAFKA_BOOTSTRAP_SERVERS is not set")
        return 2
    ensure_topics_for(settings, timeout_s=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
