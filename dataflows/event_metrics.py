"""Prometheus counters of what the dataflow decided, counted from its monitor events (one place: the
flow inspects its event stream with `observe_event`). The dashboard (deploy/grafana/dashboards) reads
alerts by type and level, commands by status, robot status and health, LLM calls from here.

Like every dataflow output these are at-least-once: events re-emitted after a resume count again.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from worktool.events import MonitorEvent

MONITOR_EVENTS = Counter(
    "worktool_dataflow_monitor_events_total", "Monitor events emitted, by event", ["event"]
)
ALERTS = Counter(
    "worktool_dataflow_alerts_total",
    "Alert transitions (raised, escalated, retriggered, cancelled) by alert type and level after it",
    ["transition", "alert_type", "level"],
)
COMMANDS = Counter(
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
AI_CALLS = Counter("worktool_dataflow_ai_calls_total", "LLM calls by outcome", ["status"])
AI_CALL_SECONDS = Histogram(
    "worktool_dataflow_ai_call_seconds",
    "Latency of LLM calls that got an answer or timed out",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
)

PIPELINE_GAP_RECORDS = Counter(
    "worktool_pipeline_gap_records_total",
    "Records acknowledged by a gateway and missing in the dataflow a grace period later (pipeline_gap)",
)
PIPELINE_GAP_RECOVERED = Counter(
    "worktool_pipeline_gap_recovered_records_total",
    "Records of a reported pipeline_gap that arrived after all",
)

_TRANSITIONS = {
    "alert_raised": "raised",
    "alert_escalated": "escalated",
    "alert_retriggered": "retriggered",
    "alert_cancelled": "cancelled",
}
_COMMAND_STATUS = {"command_created": "pending", "command_sent": "sent", "command_timeout": "timeout"}


def observe_event(_step_id: str, event: MonitorEvent) -> None:
    """Count one monitor event (the signature of `bytewax.operators.inspect`)."""
    name = event.event
    MONITOR_EVENTS.labels(name).inc()
    data = event.data
    if name in _TRANSITIONS:
        alert = getattr(data, "alert", None)
        if alert is not None:
            ALERTS.labels(_TRANSITIONS[name], alert.alert_type, str(alert.level)).inc()
    elif name in _COMMAND_STATUS:
        COMMANDS.labels(_COMMAND_STATUS[name]).inc()
    elif name == "command_result":
        COMMANDS.labels(str(getattr(data, "status", "unknown"))).inc()
    elif name == "robot_status" and event.robot_id:
        ROBOT_ONLINE.labels(event.robot_id).set(1 if getattr(data, "status", None) == "online" else 0)
    elif name == "robot_health" and event.robot_id:
        ROBOT_HEALTH_SCORE.labels(event.robot_id).set(getattr(data, "score", 0))
        ROBOT_ONLINE.labels(event.robot_id).set(1 if getattr(data, "online", False) else 0)
    elif name == "pipeline_gap":
        if getattr(data, "status", None) == "open":
            PIPELINE_GAP_RECORDS.inc(getattr(data, "missing", 0))
        else:  # one late record per corrected/closed event
            PIPELINE_GAP_RECOVERED.inc()
    elif name == "ai_call":
        AI_CALLS.labels(str(getattr(data, "status", "unknown"))).inc()
        latency_ms = getattr(data, "latency_ms", None)
        if latency_ms is not None:
            AI_CALL_SECONDS.observe(latency_ms / 1000)


__all__ = ["observe_event"]
