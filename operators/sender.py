"""Who is speaking (docs/rules.md §1). Pure: the roster comes from BusinessConfig.

WorkTool gives only a display name. Order: exact names first (robot > operator > staff > assistant),
then the roster patterns in the same order; in an internal group or contact (roomType 3/4) anyone else
is a colleague (staff), elsewhere a user (号主).
"""

from __future__ import annotations

import re
import unicodedata

from worktool.config import BusinessConfig
from worktool.models import INTERNAL_ROOM_TYPES, SenderType

_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060\ufeff]")
_CACHE_LIMIT = 50_000


def normalize_name(name: str) -> str:
    """Comparable form of a display name: NFKC (full-width to half-width), no invisible characters,
    no surrounding spaces, case-folded. "运营-Linda " and "运营－linda" compare equal."""
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", name)).strip().casefold()


class SenderResolver:
    def __init__(self, config: BusinessConfig) -> None:
        self._exact: dict[str, SenderType] = {}
        # Lowest precedence first, so a name listed twice keeps its highest-precedence type.
        rosters: list[tuple[SenderType, list[str]]] = [
            ("assistant", config.assistants),
            ("staff", config.staff),
            ("operator", config.operators),
            ("robot", [r.name for r in config.robots]),
        ]
        for sender_type, names in rosters:
            for name in names:
                self._exact[normalize_name(name)] = sender_type
        self._patterns = [
            (sender_type, pattern)
            for sender_type, patterns in config.compiled_name_patterns.items()
            for pattern in patterns
        ]
        self._cache: dict[tuple[str, bool], tuple[SenderType, str]] = {}

    def resolve(self, name: str, room_type: int = 1) -> tuple[SenderType, str]:
        """(sender type, reason) for a display name in a room of `room_type`."""
        key = (name, room_type in INTERNAL_ROOM_TYPES)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= _CACHE_LIMIT:  # names churn slowly; a full reset keeps memory bounded
                self._cache.clear()
            hit = self._cache[key] = self._resolve(name, internal=key[1])
        return hit

    def sender_type(self, name: str, room_type: int = 1) -> SenderType:
        return self.resolve(name, room_type)[0]

    def is_ours(self, name: str) -> bool:
        """A robot or a colleague (anyone on the roster), as opposed to an owner."""
        return self.resolve(name)[0] != "user"

    def _resolve(self, name: str, *, internal: bool) -> tuple[SenderType, str]:
        norm = normalize_name(name)
        exact = self._exact.get(norm)
        if exact is not None:
            return exact, f"{exact} roster name"
        display = unicodedata.normalize("NFKC", name).strip()
        for sender_type, pattern in self._patterns:
            if pattern.search(display):
                return sender_type, f"{sender_type} name pattern {pattern.pattern}"
        if internal:
            return "staff", "unknown name in an internal room"
        return "user", "not on the roster"
