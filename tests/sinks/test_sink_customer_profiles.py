"""The customer_updated projection against a real, migrated database: one customer_profiles row per
(session, owner) with every column, the newest profile wins whatever order the events come in, and a
replayed event leaves the row as it was."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from sinks.postgres import write_events
from tests.customer_rows import SESSION, T0, customer_data, customer_event
from worktool.events import CustomerUpdated

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(new_database: Callable[..., str]) -> Iterator[psycopg.Connection]:
    with psycopg.connect(new_database(migrated=True), autocommit=True, row_factory=dict_row) as c:
        yield c


def rows(conn: psycopg.Connection) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT *, xmin::text AS v FROM customer_profiles ORDER BY session_id, user_name"
    ).fetchall()


def test_a_profile_is_one_row_with_every_column(conn: psycopg.Connection) -> None:
    assert write_events(conn, [customer_event()]) == {"customer_profiles": 1}
    [row] = rows(conn)
    row.pop("v")
    assert list(row) == ["session_id", *CustomerUpdated.model_fields, "updated_at"]
    stored = CustomerUpdated.model_validate(
        {k: v for k, v in row.items() if k in CustomerUpdated.model_fields}
    )
    assert stored == CustomerUpdated.model_validate(customer_data())
    assert (row["session_id"], row["updated_at"]) == (SESSION, T0)


def test_the_newest_profile_wins_in_any_order_and_a_replay_changes_nothing(conn: psycopg.Connection) -> None:
    old = customer_event(at=T0, health_score=70, health_band="healthy")
    new = customer_event(at=T0 + timedelta(minutes=10), health_score=40, health_band="watch")
    write_events(conn, [new])
    write_events(conn, [old])  # late: older than the row
    [row] = rows(conn)
    assert (row["health_score"], row["updated_at"]) == (40, T0 + timedelta(minutes=10))
    write_events(conn, [old, new])  # a replay of both, in one batch
    [again] = rows(conn)
    assert again == row  # the same physical row version (xmin): not rewritten


def test_owners_are_apart_by_session_and_name(conn: psycopg.Connection) -> None:
    write_events(
        conn,
        [customer_event("小王"), customer_event("小李"), customer_event("小王", session_id="group:另一个群")],
    )
    assert [(r["session_id"], r["user_name"]) for r in rows(conn)] == [
        ("group:另一个群", "小王"), (SESSION, "小李"), (SESSION, "小王"),
    ]  # fmt: skip
