"""Logging helpers shared by every process."""

from __future__ import annotations

import logging
import time


class OncePerInterval(logging.Filter):
    """While a broker is down librdkafka logs every reconnect attempt, several a second: keep one line
    per facility and client every `interval_s` (the caller's own lines say what it is waiting for)."""

    def __init__(self, interval_s: float) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[object, ...], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = tuple(record.args[:2]) if isinstance(record.args, tuple) else (record.msg,)
        now = time.monotonic()
        if now - self._last.get(key, float("-inf")) < self.interval_s:
            return False
        self._last[key] = now
        return True


def quiet_kafka_log(name: str, interval_s: float = 10.0) -> logging.Logger:
    """The logger to hand librdkafka (`"logger": ...` in a client's config), rate-limited."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, OncePerInterval) for f in logger.filters):
        logger.addFilter(OncePerInterval(interval_s))
    return logger
