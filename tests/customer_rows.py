"""Customer profiles for the tests (docs/rules.md §7.6): a `customer_updated` event as the sessions step
emits it, and its row in customer_profiles written through the real projection (sinks/postgres.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from sinks.postgres import write_events
from worktool.events import CustomerUpdated, MonitorEvent

SESSION = "group:视频号运营3群"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def customer_data(name: str = "小王", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "user_name": name,
        "group_name": "视频号运营3群",
        "first_seen_at": "2026-03-01T01:00:00Z",
        "last_message_at": "2026-03-01T01:55:00Z",
        "message_count": 6,
        "messages": {"chat_after_sales": 2, "chat_daily": 3, "chat_complaint": 1},
        "requirements": {"needs": 2, "opened": 1, "completed": 0, "cancelled": 0},
        "open_tasks": [{"task_id": "task_1", "task_type": "scan_qr", "opened_at": "2026-03-01T01:10:00Z"}],
        "alerts": {"user_complaint": 1},
        "open_alerts": 1,
        "satisfaction": 0.31,
        "satisfaction_trend": "down",
        "cooperation": {"responded": 1, "refused": 0, "timeout": 1},
        "cooperation_level": "partial",
        "responses": 2,
        "avg_response_minutes": 6.5,
        "waiting_since": "2026-03-01T01:55:00Z",
        "health_score": 52,
        "health_band": "watch",
    }
    return {**data, **overrides}


def customer_event(
    name: str = "小王", at: datetime = T0, session_id: str = SESSION, **overrides: Any
) -> MonitorEvent:
    return CustomerUpdated.event(event_time=at, session_id=session_id, **customer_data(name, **overrides))


def insert_customers(database_url: str, *events: MonitorEvent) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        write_events(conn, list(events))
