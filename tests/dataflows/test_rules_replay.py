"""The event-time rules over a recorded day: the same events whatever the batch size and worker count,
`--until` firing what is due, and the Postgres projection of windows, interventions, alerts, commands and
tasks, idempotent under re-emission."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from classifiers import load_type_model
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.replay import replay_archive
from dataflows.sources import ArchiveSource
from operators.classify import RuleClassifier
from sinks.postgres import write_events
from worktool.config import load_config
from worktool.events import MonitorEvent, parse_event
from worktool.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"
CONFIG_PATH = REPO / "config" / "business.example.yaml"
UNTIL = datetime(2025, 3, 20, tzinfo=UTC)  # long after the sample day: every timer is due


def run_day(batch_size: int, workers: int, until: datetime | None = UNTIL) -> list[MonitorEvent]:
    config = load_config(CONFIG_PATH)
    out: list[MonitorEvent] = []
    source = ArchiveSource(
        SAMPLE, timedelta(seconds=60), batch_size=batch_size, lateness=timedelta(seconds=1), until=until
    )
    flow = build_flow(
        source,
        FlowSinks(events=[TestingSink(out)]),
        RuleClassifier(config, model=load_type_model("builtin")),
        FlowOptions(config=config),
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return out


def canonical(events: list[MonitorEvent]) -> list[str]:
    return sorted(e.to_json().decode() for e in events)


@pytest.fixture(scope="module")
def reference() -> list[MonitorEvent]:
    return run_day(1000, 1)


def test_the_day_produces_every_kind_of_rule_event(reference: list[MonitorEvent]) -> None:
    kinds = Counter(e.event for e in reference)
    for name in ("staff_window_opened", "staff_window_closed", "session_state", "intervention_needed",
                 "alert_raised", "alert_cancelled", "command_created", "task_created"):  # fmt: skip
        assert kinds[name] > 0, name
    reasons = {e.data.reason for e in reference if e.event == "alert_cancelled"}
    assert {"staff_intervened", "user_satisfied", "problem_solved", "expired"} <= reasons
    # Every event validates against the catalogue (the producers build them unchecked).
    for e in reference:
        assert parse_event(e.to_json()) == parse_event(e.to_json())


@pytest.mark.parametrize("batch_size,workers", [(1, 1), (7, 2), (1000, 2)])
def test_same_rule_events_whatever_the_batch_size_and_worker_count(reference, batch_size, workers) -> None:
    assert canonical(run_day(batch_size, workers)) == canonical(reference)


def test_without_until_timers_pending_at_the_end_stay_pending(reference) -> None:
    without = run_day(1000, 1, until=None)
    last_record = max(e.event_time for e in without if e.event == "message_classified")
    expired = [e for e in reference if e.event == "alert_cancelled" and e.data.reason == "expired"]
    assert expired and all(e.event_time > last_record for e in expired)
    assert not any(e.event == "alert_cancelled" and e.data.reason == "expired" for e in without)
    # Everything up to the last record is the same.
    assert canonical(
        [e for e in reference if e.event_time <= last_record - timedelta(seconds=60)]
    ) == canonical([e for e in without if e.event_time <= last_record - timedelta(seconds=60)])


def test_replay_archive_until_writes_the_same_events(tmp_path, reference) -> None:
    buffer = io.BytesIO()
    settings = Settings(WORKTOOL_CONFIG=str(CONFIG_PATH), WORKTOOL_ALLOWED_LATENESS_S=1)
    replay_archive(SAMPLE, buffer, settings=settings, until=UNTIL)
    lines = [line.decode() for line in buffer.getvalue().splitlines() if line]
    assert sorted(lines) == canonical(reference)


# -- the Postgres projection --------------------------------------------------------------------------


def rows(conn: psycopg.Connection, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


@pytest.mark.integration
def test_rule_events_project_into_postgres_idempotently(new_database, reference) -> None:
    url = new_database(migrated=True)
    with psycopg.connect(url, autocommit=True) as conn:
        write_events(conn, reference)
        first = {t: rows(conn, f"SELECT * FROM {t} ORDER BY 1") for t in ("alert_history", "robot_commands",
                 "after_sales_tasks", "sessions", "session_messages")}  # fmt: skip
        # Re-emitted in any grouping and order (at-least-once output after a restart): same rows.
        write_events(conn, list(reversed(reference)))
        for i in range(0, len(reference), 37):
            write_events(conn, reference[i : i + 37])
        again = {t: rows(conn, f"SELECT * FROM {t} ORDER BY 1") for t in first}
        assert again == first

        alerts = {e.data.alert_id: e.data.alert for e in reference if e.event.startswith("alert_")}
        final = {}
        for a in alerts.values():
            final[a.alert_id] = max((e.data.alert for e in reference if e.event.startswith("alert_")
                                     and e.data.alert_id == a.alert_id), key=lambda s: s.version)  # fmt: skip
        stored = {
            a: tuple(rest)
            for a, *rest in rows(
                conn, "SELECT alert_id, status, alert_level, cancel_reason, version FROM alert_history"
            )
        }
        assert len(stored) == len(final)
        for alert_id, snap in final.items():
            status, level, reason, version = stored[alert_id]
            assert (status, level, reason, version) == (
                snap.status,
                snap.level,
                snap.cancel_reason,
                snap.version,
            )
        cancelled = rows(
            conn, "SELECT count(*) FROM alert_history WHERE status = 'cancelled' AND cancelled_at IS NULL"
        )
        assert cancelled == [(0,)]

        commands = {e.data.command_id for e in reference if e.event == "command_created"}
        decided = rows(
            conn,
            "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM robot_commands WHERE cause_event IS NOT NULL",
        )
        assert decided == [(len(commands), len(commands))]  # nothing sent them: a replay never sends
        # The day's own sends (accepted + result records) end completed or failed, with their times.
        ended = {e.data.command_id: e.data.status for e in reference if e.event == "command_result"}
        stored_ends = dict(
            rows(conn, "SELECT command_id, status FROM robot_commands WHERE cause_event IS NULL")
        )
        assert stored_ends == ended and "failed" in ended.values()
        flagged = {e.data.message_id for e in reference if e.event == "intervention_needed"}
        stored_flags = {
            m for (m,) in rows(conn, "SELECT message_id FROM session_messages WHERE is_staff_intervention")
        }
        assert stored_flags == flagged
        # Every flagged message is a real, classified message (not a placeholder row).
        assert rows(
            conn, "SELECT count(*) FROM session_messages WHERE is_staff_intervention AND sender_type IS NULL"
        ) == [(0,)]

        states = {}
        for e in reference:
            if e.event == "session_state" and (
                e.session_id not in states or e.event_time >= states[e.session_id][0]
            ):
                states[e.session_id] = (e.event_time, e.data.status, e.data.ai_paused)
        stored_states = {
            s: (st, p)
            for s, st, p in rows(
                conn, "SELECT session_id, status, ai_paused FROM sessions WHERE state_changed_at IS NOT NULL"
            )
        }
        assert stored_states == {s: (st, p) for s, (_, st, p) in states.items()}

        tasks = {e.data.task_id for e in reference if e.event == "task_created"}
        assert {t for (t,) in rows(conn, "SELECT task_id FROM after_sales_tasks")} == tasks
