"""Live wiring: Kafka worktool.raw + wall-clock ticks -> the flow -> worktool.monitor, Postgres, DLQ,
heartbeat. Run with `worktool dataflow` (dataflows/runner.py), which calls
`python -m bytewax.run "dataflows.main:live_flow()" -r <recovery dir> ...`."""

from __future__ import annotations

import logging
from datetime import timedelta

from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow

from classifiers import build_classifier, call_log_events
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import TickSource
from sinks.heartbeat import HeartbeatSink
from sinks.kafka import DeadLetters, ModelKafkaSink
from worktool.config import load_config
from worktool.models import CommandRecord
from worktool.settings import get_settings

log = logging.getLogger(__name__)


def command_key(command: CommandRecord) -> bytes:
    return (command.robot_id or command.target).encode()


def live_flow() -> Dataflow:
    settings = get_settings()
    if not (settings.kafka_bootstrap_servers and settings.database_url and settings.redis_url):
        raise SystemExit("the live dataflow needs KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL")
    from sinks.postgres import PostgresEventSink

    config = load_config(settings.config_path)
    classifier = build_classifier(settings, config)
    bootstrap = settings.kafka_bootstrap_servers
    kafka = KafkaSource(
        [bootstrap],
        # Operators' control records are applied in order with everything else.
        [settings.topic_raw, settings.topic_control],
        tail=True,
        batch_size=1000,
        raise_on_errors=False,
        # Tansu joins consumer groups slowly; bytewax uses assign(), these only shorten timeouts.
        add_config={"session.timeout.ms": "6000", "fetch.wait.max.ms": "50"},
    )
    ticks = TickSource(
        timedelta(seconds=settings.tick_interval_s), timedelta(seconds=settings.allowed_lateness_s)
    )
    limits = settings.limits
    dead_letters = DeadLetters(bootstrap, settings.topic_dlq, limits)  # the sinks' poison records
    sinks = FlowSinks(
        events=[
            ModelKafkaSink(bootstrap, settings.topic_monitor, limits, dead_letters=dead_letters),
            PostgresEventSink(settings.database_url, dead_letters=dead_letters),
        ],
        dlq=[ModelKafkaSink(bootstrap, settings.topic_dlq, limits)],
        heartbeat=[HeartbeatSink(settings.redis_url)],
        # One robot's commands stay in order on one partition (the dispatcher rate-limits per robot).
        commands=[
            ModelKafkaSink(
                bootstrap, settings.topic_commands, limits, key_fn=command_key, dead_letters=dead_letters
            )
        ],
    )
    log.info(
        "live dataflow: %s + %s -> %s, %s, postgres, %s",
        settings.topic_raw,
        settings.topic_control,
        settings.topic_monitor,
        settings.topic_commands,
        settings.topic_dlq,
    )
    return build_flow(
        [kafka, ticks],
        sinks,
        classifier,
        FlowOptions.from_settings(settings, config),
        extra_events=call_log_events(classifier),
    )
