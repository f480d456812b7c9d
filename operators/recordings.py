"""Recorded LLM answers (worktool.models.LlmRecord), looked up by what they decided about: a replay of an
archive that holds them makes every LLM decision the live run made, without a provider. Pure.

    recordings.get("classify", message_id)   -> the live classification's LLM answer, or None
    recordings.get("reply", command_id)       -> the reply text live sent (or its recorded fallback)

An empty `Recordings` (an archive without answers, or none asked for) answers None everywhere: the
rules and the templates decide, and the replay says so.
"""

from __future__ import annotations

from collections.abc import Iterable

from worktool.models import LlmOperation, LlmRecord


class Recordings:
    __slots__ = ("_by_key",)

    def __init__(self, records: Iterable[LlmRecord] = ()) -> None:
        self._by_key: dict[tuple[str, str], LlmRecord] = {}
        for r in records:
            self.add(r)

    def add(self, record: LlmRecord) -> None:
        """The latest record of a key wins (a live run re-emits after a restart: the same decision)."""
        self._by_key[(record.operation, record.key)] = record

    def get(self, operation: LlmOperation, key: str) -> LlmRecord | None:
        return self._by_key.get((operation, key))

    def count(self, operation: LlmOperation | None = None) -> int:
        return sum(1 for op, _ in self._by_key if operation is None or op == operation)

    def __len__(self) -> int:
        return len(self._by_key)

    def __bool__(self) -> bool:
        return bool(self._by_key)


__all__ = ["Recordings"]
