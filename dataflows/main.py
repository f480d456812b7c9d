"""Live wiring: Kafka worktool.raw + wall-clock ticks -> the flow -> worktool.monitor, Postgres, DLQ,
heartbeat. Run with `worktool dataflow` (dataflows/runner.py), which calls
`python -m bytewax.run "dataflows.main:live_flow()" -r <recovery dir> ...`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow

from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import TickSource
from operators.classify import Classifier, PlaceholderClassifier
from sinks.heartbeat import HeartbeatSink
from sinks.kafka import ModelKafkaSink
from worktool.config import BusinessConfig, load_config
from worktool.models import MonitorEvent, utc_now
from worktool.settings import Settings, get_settings

log = logging.getLogger(__name__)


def flow_options(settings: Settings, config: BusinessConfig) -> FlowOptions:
    return FlowOptions(
        shards=settings.shards, dedup_window=timedelta(seconds=settings.dedup_window_s), config=config
    )


def ai_call_event(call: dict) -> MonitorEvent:
    """An LLM call log as a monitor event, stamped with its message's event time."""
    return MonitorEvent(
        event="ai_call", event_time=call.get("event_time") or utc_now(), session_id=call.get("session_id"),
        robot_id=call.get("robot_id"), data={k: v for k, v in call.items() if k != "event_time"},
    )


def make_classifier(
    settings: Settings, config: BusinessConfig
) -> tuple[Classifier, Callable[[], list[MonitorEvent]] | None]:
    """The classifier for this run, and a drain of the monitor events it produces (LLM call logs)."""
    try:
        from worktool.classifiers import build_classifier
    except ImportError:  # rules not installed yet in this checkout: keep the pipeline running
        return PlaceholderClassifier(config), None
    classifier = build_classifier(settings, config)
    drain = getattr(classifier, "drain_call_logs", None)
    if drain is None:
        return classifier, None
    return classifier, lambda: [ai_call_event(c) for c in drain()]


def live_flow() -> Dataflow:
    settings = get_settings()
    if not (settings.kafka_bootstrap_servers and settings.database_url and settings.redis_url):
        raise SystemExit("the live dataflow needs KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL")
    from sinks.postgres import PostgresEventSink

    config = load_config(settings.config_path)
    classifier, extra = make_classifier(settings, config)
    bootstrap = settings.kafka_bootstrap_servers
    kafka = KafkaSource(
        [bootstrap],
        [settings.topic_raw],
        tail=True,
        batch_size=1000,
        raise_on_errors=False,
        # Tansu joins consumer groups slowly; bytewax uses assign(), these only shorten timeouts.
        add_config={"session.timeout.ms": "6000", "fetch.wait.max.ms": "50"},
    )
    ticks = TickSource(timedelta(seconds=settings.tick_interval_s), timedelta(seconds=settings.tick_lag_s))
    sinks = FlowSinks(
        events=[ModelKafkaSink(bootstrap, settings.topic_monitor), PostgresEventSink(settings.database_url)],
        dlq=[ModelKafkaSink(bootstrap, settings.topic_dlq)],
        heartbeat=[HeartbeatSink(settings.redis_url)],
    )
    log.info("live dataflow: %s -> %s, postgres, %s", settings.topic_raw, settings.topic_monitor, settings.topic_dlq)
    return build_flow([kafka, ticks], sinks, classifier, flow_options(settings, config), extra_events=extra)
