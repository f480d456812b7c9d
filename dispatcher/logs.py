"""One JSON object per log line: `{"ts", "level", "logger", "msg", ...fields}`. Fields are passed as
`log.info("request", extra={"fields": {...}})`. Message texts and targets are never logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_json_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request with its URL (a webhook URL may carry a token); ours is the line to read.
    logging.getLogger("httpx").setLevel(logging.WARNING)
