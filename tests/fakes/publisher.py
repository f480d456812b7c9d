"""A stand-in for gateway.producer.Publisher that remembers what was published (raw bytes)."""

from __future__ import annotations

from typing import Any

import orjson


class RecordingPublisher:
    """`spool_allowed=False`: a test where nothing may reach the spool fails if something does."""

    def __init__(self, spool_allowed: bool = True) -> None:
        self.records: list[tuple[str, str | None, bytes]] = []
        self.spooling = False
        self.spool_depth = 0
        self._spool_allowed = spool_allowed

    async def publish(self, topic: str, key: str | None, value: bytes) -> bool:
        self.records.append((topic, key, value))
        return True

    async def spool(self, topic: str, key: str | None, value: bytes) -> None:
        if not self._spool_allowed:
            raise AssertionError("nothing is spooled here")
        self.records.append((topic, key, value))

    async def probe(self) -> bool:
        return True

    def values(self, topic: str) -> list[bytes]:
        return [value for t, _, value in self.records if t == topic]

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for value in self.values(topic)]
