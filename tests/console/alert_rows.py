"""alert_history rows for the console tests, inserted with plain SQL (the dataflow owns the table; the
console only reads it)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

RAISED_AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def insert_alert(
    database_url: str,
    *,
    status: str = "open",
    level: int = 1,
    session_id: str | None = "group:视频号运营A群",
    robot_id: str | None = "robot-day",
    alert_type: str = "staff_no_reply",
) -> str:
    """Insert one alert and return its (unique) id; a cancelled alert gets the reason and time the
    table requires."""
    alert_id = f"alert-{uuid.uuid4().hex[:12]}"
    cancelled = status == "cancelled"
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """
            INSERT INTO alert_history (alert_id, alert_type, alert_key, session_id, user_name, group_name,
                robot_id, alert_level, status, escalation_count, escalation_history, cancel_reason,
                cancelled_at, raised_at, last_triggered_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)
            """,
            (
                alert_id, alert_type, f"{alert_type}:{session_id or robot_id}", session_id, "用户甲",
                "视频号运营A群" if session_id else None, robot_id, level, status, level - 1,
                '[{"at": "2026-03-02T09:40:00.000Z", "from_level": 1, "to_level": 2, "by": "rules"}]'
                if level > 1 else "[]",
                "staff_intervened" if cancelled else None,
                RAISED_AT + timedelta(minutes=20) if cancelled else None,
                RAISED_AT, RAISED_AT + timedelta(minutes=10),
            ),
        )  # fmt: skip
    return alert_id


def alert_columns(database_url: str, alert_id: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM alert_history WHERE alert_id = %s", (alert_id,)).fetchone()
    assert row is not None
    return row
