"""Live wiring: Kafka worktool.raw + wall-clock ticks -> the flow -> worktool.monitor, Postgres, DLQ,
heartbeat. Run with `worktool dataflow` (dataflows/runner.py), which calls
`python -m bytewax.run "dataflows.main:live_flow()" -r <recovery dir> ...`."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta

import psycopg
import redis
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from classifiers import build_classifier, build_reply_generator, call_log_events
from dataflows.cluster import resolve_shape
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.metrics import OFFSET_RESETS
from dataflows.sources import GuardedKafkaSource, TickSource, WithTicks
from dataflows.watchdog import StepBudget, watchdog_dir
from infra import kafka_clients
from infra.migrate import latest_console_personas
from operators.shard import shard_for
from sinks.concurrent import ConcurrentSinks
from sinks.heartbeat import OFFSET_RESET_KEY, HeartbeatSink
from sinks.kafka import DeadLetters, ModelKafkaSink
from sinks.overlapped import OverlappedSink
from worktool.config import BusinessConfig, load_config
from worktool.models import CommandRecord, LlmRecord, utc_now
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


def offsets_reset(redis_url: str) -> Callable[[str, str], None]:
    """Say loudly that a partition is re-read from the start: a log line, a metric, and a notice on the
    gateway's /healthz for an hour."""

    def report(partition: str, why: str) -> None:
        log.error("kafka partition %s: %s; reading it again from the beginning (the sinks are idempotent)",
                  partition, why)  # fmt: skip
        OFFSET_RESETS.labels(partition.split("-", 1)[1]).inc()
        try:
            client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
            client.set(OFFSET_RESET_KEY, f"{utc_now().isoformat()} {partition}: {why}", ex=3600)
            client.close()
        except redis.RedisError as e:  # the log line and the metric remain
            log.warning("offset reset notice not written to redis: %s", e)

    return report


def command_key(command: CommandRecord) -> bytes:
    return (command.robot_id or command.target).encode()


def llm_key(record: LlmRecord) -> bytes:
    return record.key.encode()


SOURCE_BATCH = 1000  # records per poll of one Kafka partition (bytewax KafkaSource batch_size)


def kafka_source(
    bootstrap: str, topics: list[str], *, tail: bool, batch_size: int = SOURCE_BATCH, **config: str
) -> KafkaSource:
    """bytewax's KafkaSource with the dataflow role of the Kafka client factory (infra/kafka_clients.py):
    assign() only with short timeouts for Tansu, and auto.offset.reset=error, so a lost position is
    reported to GuardedKafkaSource (which re-reads the partition from the beginning, loudly) instead of
    librdkafka jumping to the end silently."""
    return KafkaSource(
        [bootstrap],
        topics,
        tail=tail,
        batch_size=batch_size,
        raise_on_errors=False,
        add_config=kafka_clients.source_config(**config),
    )


def live_sinks(settings: Settings, *, concurrent: bool = True, overlapped: bool = True) -> FlowSinks:
    """The live flow's sinks without the heartbeat: monitor topic + Postgres projection (written at the
    same time, sinks/concurrent.py; one after the other with `concurrent=False`), in the background while
    the flow goes on and acknowledged by each epoch's close (sinks/overlapped.py; while the worker waits
    with `overlapped=False`), DLQ, commands."""
    from sinks.postgres import PostgresEventSink

    assert settings.kafka_bootstrap_servers and settings.database_url
    bootstrap, limits = settings.kafka_bootstrap_servers, settings.limits
    dead_letters = DeadLetters(bootstrap, settings.topic_dlq, limits)  # the sinks' poison records
    events: list[Sink] = [
        ModelKafkaSink(bootstrap, settings.topic_monitor, limits, dead_letters=dead_letters),
        PostgresEventSink(settings.database_url, dead_letters=dead_letters),
    ]
    if concurrent:
        events = [ConcurrentSinks(events)]
    if overlapped:
        shards = settings.shards
        events = [
            OverlappedSink(e, shards, lambda ev: shard_for(ev.session_id or "", shards)) for e in events
        ]
    return FlowSinks(
        events=events,
        dlq=[ModelKafkaSink(bootstrap, settings.topic_dlq, limits)],
        # One robot's commands stay in order on one partition (the dispatcher rate-limits per robot).
        commands=[
            ModelKafkaSink(
                bootstrap, settings.topic_commands, limits, key_fn=command_key, dead_letters=dead_letters
            )
        ],
        llm=[
            ModelKafkaSink(bootstrap, settings.topic_llm, limits, key_fn=llm_key, dead_letters=dead_letters)
        ],
    )


def with_console_personas(config: BusinessConfig, database_url: str) -> BusinessConfig:
    """The configuration with each persona's latest console version (PUT /api/personas/{code}) over the
    package and the business YAML; as it is when the database cannot be read (logged)."""
    try:
        versions = latest_console_personas(database_url)
    except psycopg.Error as e:
        log.warning("persona versions not read (%s): the business configuration's personas apply", e)
        return config
    if not versions:
        return config
    log.info("personas from the console: %s", ", ".join(sorted(versions)))
    return config.model_copy(update={"personas": config.personas.with_versions(versions)})


def live_flow() -> Dataflow:
    settings = get_settings()
    if not (settings.kafka_bootstrap_servers and settings.database_url and settings.redis_url):
        raise SystemExit("the live dataflow needs KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL")
    config = with_console_personas(load_config(settings.config_path), settings.database_url)
    classifier = build_classifier(settings, config)
    bootstrap = settings.kafka_bootstrap_servers
    # Ticks every tick interval while records arrive, every idle tick interval once none has for a second
    # (sources.TickPace); a one-worker flow then waits in its consumer until the next idle tick.
    ticks = TickSource(
        timedelta(seconds=settings.tick_interval_s),
        timedelta(seconds=settings.allowed_lateness_s),
        timedelta(seconds=settings.idle_tick_interval_s),
    )
    kafka = GuardedKafkaSource(
        # Operators' control records are applied in order with everything else.
        kafka_source(bootstrap, [settings.topic_raw, settings.topic_control], tail=True),
        bootstrap,
        offsets_reset(settings.redis_url),
        pace=ticks.pace,
        wait_for_ticks=resolve_shape(settings).total_workers == 1,
    )
    sinks = dataclasses.replace(
        live_sinks(settings),
        heartbeat=[HeartbeatSink(settings.redis_url, process_id=settings.dataflow_process_id or 0)],
    )
    log.info(
        "live dataflow: %s + %s -> %s, %s, postgres, %s",
        settings.topic_raw,
        settings.topic_control,
        settings.topic_monitor,
        settings.topic_commands,
        settings.topic_dlq,
    )
    budget = StepBudget(settings.step_budget_s, watchdog_dir(settings.data_dir, settings.dataflow_process_id))
    return build_flow(
        WithTicks(kafka, ticks),  # one input: its partitions change epochs together (sources.WithTicks)
        sinks,
        classifier,
        dataclasses.replace(
            FlowOptions.from_settings(settings, config),
            budget=budget,
            reply_generator=build_reply_generator(settings, config),
        ),
        extra_events=call_log_events(classifier),
    )
