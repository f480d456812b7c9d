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
    __slots__ = ("_by_key",)

    def __init__(self, records: Iterable[LlmRecord] = ()) -> None:
        self._by_key: dict[tuple[str, str], LlmRecord | bytes] = {}
        for r in records:
            self.add(r)

    def add(self, record: LlmRecord) -> None:
        """The latest record of a key wins (a live run re-emits after a restart: the same decision)."""
        self._by_key[(record.operation, record.key)] = record

    def add_line(self, line: bytes) -> None:
        """One archive line (`LINE_PREFIX`...), kept as it is; its operation and key are read now, the
        rest is validated by `get`. Raises BadRecording for a line without them."""
        try:
            data = orjson.loads(line)
            operation, key = data["operation"], data["key"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            raise BadRecording(f"not a recorded LLM answer: {e}") from e
        if operation not in _OPERATIONS or not isinstance(key, str) or not key:
            raise BadRecording(f"not a recorded LLM answer: operation {operation!r}, key {key!r}")
        self._by_key[(operation, key)] = line

    def get(self, operation: LlmOperation, key: str) -> LlmRecord | None:
        found = self._by_key.get((operation, key))
        if isinstance(found, bytes):
            try:
                found = LlmRecord.model_validate_json(found)
            except ValidationError as e:  # as if nothing was recorded: the rules and templates decide
                log.warning(
                    "recorded LLM answer %s %s is not valid (%s): not used",
                    operation,
                    key,
                    summarize_errors(e),
                )
                del self._by_key[(operation, key)]
                return None
            self._by_key[(operation, key)] = found
        return found

    def count(self, operation: LlmOperation | None = None) -> int:
        return sum(1 for op, _ in self._by_key if operation is None or op == operation)

    def __len__(self) -> int:
        return len(self._by_key)

    def __bool__(self) -> bool:
        return bool(self._by_key)


__all__ = ["LINE_PREFIX", "BadRecording", "Recordings"]
