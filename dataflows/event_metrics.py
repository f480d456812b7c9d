"""Prometheus counters of what the dataflow decided, counted from its monitor events (one place: the
flow inspects its event stream with `observe_event`). The dashboard (deploy/grafana/dashboards) reads
alerts by type and level, commands by status, robot status and health, LLM calls from here.

Like every dataflow output these are at-least-once: events re-emitted after a resume count again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter as PromCounter
from prometheus_client import Gauge, Histogram

from worktool.events import (
    EVENT_TYPES,
    AiCall,
    AlertCancelled,
    AlertEscalated,
    AlertRaised,
    AlertRetriggered,
    CommandCreated,
    CommandResult,
    CommandSent,
    CommandTimeout,
    MonitorEvent,
    PipelineGap,
    RobotHealth,
    RobotStatus,
)

MONITOR_EVENTS = PromCounter(
    "worktool_dataflow_monitor_events_total", "Monitor events emitted, by event", ["event"]
)
ALERTS = PromCounter(
    "worktool_dataflow_alerts_total",
    "Alert transitions (raised, escalated, retriggered, cancelled) by alert type and level after it",
    ["transition", "alert_type", "level"],
)
COMMANDS = PromCounter(
    "worktool_dataflow_commands_total",
    "Command status changes the dataflow saw: created (pending), sent, completed, failed, timeout",
    ["status"],
)
ROBOT_ONLINE = Gauge(
    "worktool_dataflow_robot_online",
    "1 while the robot is online (its latest status callback or health event)",
    ["robot_id"],
)
ROBOT_HEALTH_SCORE = Gauge(
    "worktool_dataflow_robot_health_score",
    "The robot's health score (0-100) from robot_health events",
    ["robot_id"],
)
AI_CALLS = PromCounter("worktool_dataflow_ai_calls_total", "LLM calls by outcome", ["status"])
AI_CALL_SECONDS = Histogram(
    "worktool_dataflow_ai_call_seconds",
    "Latency of LLM calls that got an answer or timed out",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
)

PIPELINE_GAP_RECORDS = PromCounter(
    "worktool_pipeline_gap_records_total",
    "Records acknowledged by a gateway and missing in the dataflow a grace period later (pipeline_gap)",
)
PIPELINE_GAP_RECOVERED = PromCounter(
    "worktool_pipeline_gap_recovered_records_total",
    "Records of a reported pipeline_gap that arrived after all",
)

_TRANSITIONS: dict[type, str] = {
    AlertRaised: "raised",
    AlertEscalated: "escalated",
    AlertRetriggered: "retriggered",
    AlertCancelled: "cancelled",
}
_COMMAND_STATUS: dict[type, str] = {CommandCreated: "pending", CommandSent: "sent", CommandTimeout: "timeout"}


def observe_events(events: list[MonitorEvent]) -> None:
    """Count a batch of monitor events (the flow's `route` step calls it once per batch): by type, since a
    typed envelope's event is its type's (worktool/events.py `EVENT_TYPES`); the data of the envelopes
    that can carry a type with metrics of its own is looked at one by one, in order."""
    by_type = Counter(map(type, events))
    rare: set[type] = set()
    for t, n in by_type.items():
        envelope = _ENVELOPES.get(t) or _envelope(t)
        if envelope.counter is not None:
            envelope.counter.inc(n)
        else:  # not a typed envelope: by each event's name
            for e in events:
                if type(e) is t:
                    _child(MONITOR_EVENTS, e.event).inc()
        if envelope.rare:
            rare.add(t)
    if rare:
        for e in events:
            if type(e) in rare and type(e.data) in _RARE:
                _observe_data(e)


def observe_event(_step_id: str, event: MonitorEvent) -> None:
    """Count one monitor event (the signature of `bytewax.operators.inspect`)."""
    MONITOR_EVENTS.labels(event.event).inc()
    _observe_data(event)


_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}  # (metric, labels) -> its child (nothing removes one)


def _child(metric: Any, *labels: str) -> Any:
    child = _CHILDREN.get((metric, labels))
    if child is None:
        child = _CHILDREN[(metric, labels)] = metric.labels(*labels)
    return child


def _observe_data(event: MonitorEvent) -> None:
    """The metrics of the event's data, matched on its type (worktool/events.py: `AnyEventData`)."""
    match event.data:
        case (
            AlertRaised(alert=alert)
            | AlertEscalated(alert=alert)
            | AlertRetriggered(alert=alert)
            | AlertCancelled(alert=alert)
        ):
            _child(ALERTS, _TRANSITIONS[type(event.data)], alert.alert_type, str(alert.level)).inc()
        case CommandCreated() | CommandSent() | CommandTimeout():
            _child(COMMANDS, _COMMAND_STATUS[type(event.data)]).inc()
        case CommandResult(status=status):
            _child(COMMANDS, status).inc()
        case RobotStatus(status=status) if event.robot_id:
            _child(ROBOT_ONLINE, event.robot_id).set(1 if status == "online" else 0)
        case RobotHealth(score=score, online=online) if event.robot_id:
            _child(ROBOT_HEALTH_SCORE, event.robot_id).set(score)
            _child(ROBOT_ONLINE, event.robot_id).set(1 if online else 0)
        case PipelineGap(status="open", missing=missing):
            PIPELINE_GAP_RECORDS.inc(missing)
        case PipelineGap():  # one late record per corrected/closed event
            PIPELINE_GAP_RECOVERED.inc()
        case AiCall(status=status, latency_ms=latency_ms):
            _child(AI_CALLS, status).inc()
            if latency_ms is not None:
                AI_CALL_SECONDS.observe(latency_ms / 1000)


# The data types with metrics of their own (the others are only counted by name).
_RARE = frozenset(
    {*_TRANSITIONS, *_COMMAND_STATUS, CommandResult, RobotStatus, RobotHealth, PipelineGap, AiCall}
)


@dataclass(frozen=True)
class _Envelope:
    counter: Any  # the child of MONITOR_EVENTS of its event; None: not a typed envelope (look at each)
    rare: bool  # its data may be of a type of `_RARE`


_ENVELOPES: dict[type, _Envelope] = {}


def _envelope(t: type) -> _Envelope:
    name = next((n for n, envelope in EVENT_TYPES.items() if envelope is t), None)
    if name is None:
        found = _Envelope(None, True)
    else:
        data = t.model_fields["data"].annotation  # the event's model (or a subclass) is its data
        rare = not isinstance(data, type) or any(issubclass(r, data) for r in _RARE)
        found = _Envelope(_child(MONITOR_EVENTS, name), rare)
    _ENVELOPES[t] = found
    return found


__all__ = ["observe_event", "observe_events"]
