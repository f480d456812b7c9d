"""Rows for the console's read endpoints and accounts, inserted with plain SQL (the dataflow owns the
projection tables; the console only reads them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from console.accounts import hash_password

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery-9"  # every test account's


def insert_user(database_url: str, username: str, role: str, *, disabled: bool = False) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO console_users (username, role, password_hash, disabled, created_by) "
            "VALUES (%s, %s, %s, %s, 'test')",
            (username, role, hash_password(PASSWORD), disabled),
        )


def insert_session(
    database_url: str, session_id: str, *, messages: int, status: str = "auto", minute: int = 0
) -> None:
    """A group session with `messages` messages one minute apart, from `minute` past T0 on: user
    messages, every third one from staff."""
    with psycopg.connect(database_url) as conn:
        last = T0 + timedelta(minutes=minute + messages - 1)
        conn.execute(
            """INSERT INTO sessions (session_id, is_group, group_name, status, message_count, first_message_at,
                   last_message_at) VALUES (%s, true, %s, %s, %s, %s, %s)""",
            (
                session_id,
                session_id.removeprefix("group:"),
                status,
                messages,
                T0 + timedelta(minutes=minute),
                last,
            ),
        )
        for i in range(messages):
            staff = i % 3 == 2
            conn.execute(
                """INSERT INTO session_messages (message_id, session_id, robot_id, received_at, sender_name,
                       sender_type, content, message_type) VALUES (%s, %s, 'robot-day', %s, %s, %s, %s, %s)""",
                (
                    f"{session_id}:m{i:02d}",
                    session_id,
                    T0 + timedelta(minutes=minute + i),
                    "客服小李" if staff else "用户甲",
                    "staff" if staff else "user",
                    f"第{i}条消息",
                    "staff_reply_user" if staff else "chat_daily",
                ),
            )


def insert_robot(database_url: str, robot_id: str, status: str, sessions: list[str]) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO robots (robot_id, name, role, status) VALUES (%s, %s, 'reply_day', %s)",
            (robot_id, f"机器人{robot_id}", status),
        )
        for session_id in sessions:
            conn.execute(
                "INSERT INTO session_robots (session_id, robot_id, first_seen_at) VALUES (%s, %s, %s)",
                (session_id, robot_id, T0),
            )


def insert_command(
    database_url: str, command_id: str, status: str, *, minute: int, channel: str = "wecom"
) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """INSERT INTO robot_commands (command_id, robot_id, channel, target, content, status, created_at)
               VALUES (%s, %s, %s, 'A群', '您好', %s, %s)""",
            (
                command_id,
                None if channel != "wecom" else "robot-day",
                channel,
                status,
                T0 + timedelta(minutes=minute),
            ),
        )


def insert_ai_log(database_url: str, call_id: str, status: str, *, minute: int) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            """INSERT INTO ai_io_logs (call_id, session_id, operation_type, provider, model_id, ai_input, ai_output,
                   status, request_duration_ms, called_at)
               VALUES (%s, 'group:A群', 'classify', 'openai', 'gpt-test', '[{"role":"user"}]', 'chat_daily', %s,
                   420, %s)""",
            (call_id, status, T0 + timedelta(minutes=minute)),
        )
