"""A small circuit breaker around LLM requests.

closed --N consecutive failures--> open --cool-down elapsed--> half_open (one probe request)
half_open --probe succeeds--> closed;  half_open --probe fails--> open (a new cool-down)

Used from the classifier's single event-loop thread only, so it needs no lock. The clock is injected so
tests can move time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self._threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """May a request go out now? In half-open, only the one probe may."""
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown_s:
            self._state = "half_open"
            self._probe_in_flight = False
            log.info("LLM circuit breaker half-open: letting one probe through")
        if self._state == "closed":
            return True
        if self._state == "half_open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        if self._state != "closed":
            log.info("LLM circuit breaker closed")
        self._state = "closed"
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        if self._state == "half_open":
            self._open()
        elif self._state == "closed":
            self._failures += 1
            if self._failures >= self._threshold:
                self._open()
        # Already open: a late failure of a request sent before opening does not extend the cool-down.

    def release(self) -> None:
        """A request was abandoned without an outcome (the batch deadline cut it off). That says nothing
        about the endpoint's health, but a half-open probe must not block the next probe forever."""
        self._probe_in_flight = False

    def _open(self) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._probe_in_flight = False
        self._failures = 0
        log.warning("LLM circuit breaker open for %.0f s", self._cooldown_s)
