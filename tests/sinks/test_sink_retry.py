"""Transient or permanent: how the sinks classify failures, and how they wait (no I/O here; the real
outages are in test_sink_outages.py)."""

from __future__ import annotations

import logging

import psycopg
import pytest
from prometheus_client import REGISTRY

from sinks.postgres import is_refused_data, is_transient
from sinks.retry import Backoff, Waiter


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection failed: Connection refused"),  # client side, no SQLSTATE
        psycopg.InterfaceError("the connection is closed"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.CannotConnectNow("the database system is starting up"),
        psycopg.errors.ConnectionFailure("connection failure"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.TooManyConnections("too many clients already"),
        psycopg.errors.DiskFull("could not extend file"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_outages_are_transient(error: psycopg.Error) -> None:
    assert is_transient(error) and not is_refused_data(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.ProgramLimitExceeded("index row size 8016 exceeds btree version 4 maximum 2704"),
        psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"),  # client side
        psycopg.ProgrammingError("cannot adapt type 'object'"),  # client side
        psycopg.errors.NumericValueOutOfRange("smallint out of range"),
        psycopg.errors.CheckViolation("new row violates check constraint"),
        psycopg.errors.ForeignKeyViolation("violates foreign key constraint"),
        psycopg.errors.CharacterNotInRepertoire("invalid byte sequence"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_data_errors_are_refused_records(error: psycopg.Error) -> None:
    # ProgramLimitExceeded is an OperationalError: the class alone would call it transient.
    assert is_refused_data(error) and not is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedTable('relation "session_messages" does not exist'),
        psycopg.errors.UndefinedColumn("column does not exist"),
        psycopg.errors.InsufficientPrivilege("permission denied"),
        ValueError("not a database error"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_deployment_faults_are_neither(error: Exception) -> None:
    # Neither waited out nor dead-lettered: the dataflow stops and says why.
    assert not is_transient(error) and not is_refused_data(error)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def gauge(sink: str) -> float:
    return REGISTRY.get_sample_value("worktool_sink_waiting", {"sink": sink}) or 0.0


def retries(sink: str) -> float:
    return REGISTRY.get_sample_value("worktool_sink_retries_total", {"sink": sink}) or 0.0


def test_waiter_backs_off_exponentially_up_to_the_cap(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    before = retries("unit")
    backoff = Backoff(initial_s=0.5, max_s=4, report_every_s=10)
    with (
        caplog.at_level(logging.INFO, logger="sinks.retry"),
        Waiter("unit", backoff, sleep=clock.sleep, clock=clock) as w,
    ):
        for _ in range(8):
            w.wait(ConnectionError("refused"))
            assert gauge("unit") == 1
    assert clock.sleeps == [0.5, 1, 2, 4, 4, 4, 4, 4]
    assert gauge("unit") == 0 and retries("unit") == before + 8
    lines = [r.getMessage() for r in caplog.records]
    # One line when it starts (t=0), one every report_every_s (the failures at t=0.5, 1.5, 3.5, 7.5,
    # 11.5, 15.5, 19.5: only 11.5 is 10 s after the last line), one when it recovers (t=23.5).
    assert lines[0].startswith("unit sink: waiting for the service to come back (ConnectionError: refused)")
    assert [line for line in lines if "still waiting" in line] == [
        "unit sink: still waiting after 12 s and 5 retries (ConnectionError: refused)"
    ]
    assert lines[-1] == "unit sink: recovered after 23.5 s and 8 retries"


def test_waiter_that_never_waited_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sinks.retry"), Waiter("quiet"):
        pass
    assert caplog.records == [] and gauge("quiet") == 0


def test_waiter_clears_its_gauge_when_interrupted() -> None:
    clock = FakeClock()
    with pytest.raises(KeyboardInterrupt), Waiter("interrupted", sleep=clock.sleep, clock=clock) as w:
        w.wait(ConnectionError("refused"))
        raise KeyboardInterrupt
    assert gauge("interrupted") == 0
