"""Waiting out an outage: capped exponential backoff with one log line when a sink starts waiting, one
every `report_every_s` while it waits, one when it recovers, and Prometheus metrics.

A sink that waits blocks its bytewax worker inside `write_batch`: the worker stops pulling input, so
the outage back-pressures the flow (Kafka keeps the records) and memory stays bounded. There is no give
up: a database or broker that comes back after any length of time gets every batch, and the sink never
stops the flow for an outage. Only data errors (a poison record, see `DeadLetters` in sinks/kafka.py)
skip the wait, and only for the record concerned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

SINK_WAITING = Gauge(
    "worktool_sink_waiting",
    "Sink partitions currently waiting for their database or broker to come back",
    ["sink"],
    multiprocess_mode="livesum",
)
SINK_RETRIES = Counter(
    "worktool_sink_retries_total", "Batches a sink tried again after a transient error", ["sink"]
)
SINK_WAIT_SECONDS = Counter(
    "worktool_sink_wait_seconds_total", "Time sinks spent waiting for their database or broker", ["sink"]
)


# Called with the sink's name at every wait: the heartbeat sink registers one that tells the supervisor
# "waiting for a service, not stalled" (sinks/heartbeat.py), so an outage of any length is no restart.
WAIT_LISTENERS: list[Callable[[str], None]] = []


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: initial_s, doubling up to max_s. A log line every report_every_s."""

    initial_s: float = 0.2
    max_s: float = 10.0
    report_every_s: float = 30.0


class Waiter:
    """One write's waiting period. Use as a context manager around the retry loop:

    with Waiter("postgres", backoff) as waiter:
        while True:
            try:
                write()
                break
            except TransientError as e:
                waiter.wait(e)   # logs, counts, sleeps
    # leaving the block logs the recovery (if it waited) and clears the gauge, even on an exception
    """

    def __init__(
        self,
        sink: str,
        backoff: Backoff | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock
        self._delay = self.backoff.initial_s
        self._since: float | None = None
        self._reported_at = 0.0
        self.retries = 0

    @property
    def waiting(self) -> bool:
        return self._since is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._since is None:
            return
        waited = self._clock() - self._since
        SINK_WAITING.labels(self.sink).dec()
        SINK_WAIT_SECONDS.labels(self.sink).inc(waited)
        self._since = None
        if exc_type is None:
            log.warning("%s sink: recovered after %.1f s and %d retries", self.sink, waited, self.retries)
        else:
            log.warning("%s sink: stopped waiting after %.1f s: %s", self.sink, waited, exc_type.__name__)

    def wait(self, error: BaseException) -> None:
        """After a transient failure: log (the first time, then every report_every_s), count, sleep."""
        now = self._clock()
        if self._since is None:
            self._since = self._reported_at = now
            SINK_WAITING.labels(self.sink).inc()
            log.warning(
                "%s sink: waiting for the service to come back (%s); retrying with backoff up to %.0f s",
                self.sink, describe_error(error), self.backoff.max_s,
            )  # fmt: skip
        elif now - self._reported_at >= self.backoff.report_every_s:
            self._reported_at = now
            log.warning(
                "%s sink: still waiting after %.0f s and %d retries (%s)",
                self.sink, now - self._since, self.retries, describe_error(error),
            )  # fmt: skip
        self.retries += 1
        SINK_RETRIES.labels(self.sink).inc()
        for listener in WAIT_LISTENERS:
            try:
                listener(self.sink)
            except Exception as e:  # reporting must never break the wait
                log.debug("wait listener failed: %s", e)
        self._sleep(self._delay)
        self._delay = min(self._delay * 2, self.backoff.max_s)


def describe_error(error: BaseException) -> str:
    """`Type: first line of the message`, short enough for a log line or a DLQ reason."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"
