"""Recorded LLM answers (worktool.models.LlmRecord), looked up by what they decided about: a replay of an
archive that holds them makes every LLM decision the live run made, without a provider. Pure.

    recordings.get("classify", message_id)   -> the live classification's LLM answer, or None
    recordings.get("reply", command_id)       -> the reply text live sent (or its recorded fallback)

An empty `Recordings` (an archive without answers, or none asked for) answers None everywhere: the
rules and the templates decide, and the replay says so.

A replay reads them from the archive's lines (`add_line`), kept as the bytes they are and validated when
first asked for: an archive may hold an answer per message, and a parsed record takes about three times
the memory of its line (benchmarks/README.md, "Recorded LLM answers").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import get_args

import orjson
from pydantic import ValidationError

from worktool.models import LlmOperation, LlmRecord, summarize_errors

log = logging.getLogger(__name__)

LINE_PREFIX = b'{"kind":"llm_answer"'  # how LlmRecord.to_json() starts: an archive line that is one
_OPERATIONS = frozenset(get_args(LlmOperation))


class BadRecording(ValueError):
    """An archive line that starts as a recorded LLM answer but is not one."""


class Recordings:
    __slots__ = ("_by_operation",)

    def __init__(self, records: Iterable[LlmRecord] = ()) -> None:
        # operation -> key -> the record, or its archive line (validated when asked for)
        self._by_operation: dict[str, dict[str, LlmRecord | bytes]] = {op: {} for op in _OPERATIONS}
        for r in records:
            self.add(r)

    def add(self, record: LlmRecord) -> None:
        """The latest record of a key wins (a live run re-emits after a restart: the same decision)."""
        self._by_operation[record.operation][record.key] = record

    def add_line(self, line: bytes) -> None:
        """One archive line (`LINE_PREFIX`...), kept as it is; its operation and key are read now, the
        rest is validated by `get`. Raises BadRecording for a line without them. The latest line of a
        key wins, as with `add`."""
        try:
            data = orjson.loads(line)
            operation, key = data["operation"], data["key"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise BadRecording(f"not a recorded LLM answer: {e}") from e
        if operation not in _OPERATIONS or not isinstance(key, str) or not key:
            raise BadRecording(f"not a recorded LLM answer: operation {operation!r}, key {key!r}")
        self._by_operation[operation][key] = line

    def get(self, operation: LlmOperation, key: str) -> LlmRecord | None:
        """The record of `key`, or None. A line is validated at each call and not kept parsed (a replay
        asks once per message or command; parsed, every answer would stay in memory as a model). An
        invalid one answers None (logged): the rules and templates decide, as without a record."""
        found = self._by_operation[operation].get(key)
        if not isinstance(found, bytes):
            return found
        try:
            return LlmRecord.model_validate_json(found)
        except ValidationError as e:
            log.warning(
                "recorded LLM answer %s %s is not valid (%s): not used", operation, key, summarize_errors(e)
            )
            return None

    def count(self, operation: LlmOperation | None = None) -> int:
        if operation is None:
            return len(self)
        return len(self._by_operation[operation])

    def __len__(self) -> int:
        return sum(len(by_key) for by_key in self._by_operation.values())

    def __bool__(self) -> bool:
        return any(self._by_operation.values())


__all__ = ["LINE_PREFIX", "BadRecording", "Recordings"]
