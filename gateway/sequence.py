"""The gateway's sequence stamp: every acknowledged raw record carries `seq` = {gw: this process's boot
id, n: 1, 2, 3, ...}, so the dataflow can tell a record that never reached it from one that was never
sent (operators/gaps.py). A number taken for a record that is then not acknowledged (refused when
encoded, or answered 503) is handed back and listed as `void` in the next stamped record."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

MAX_VOID = 1000  # per record; a longer run of refusals is left for the detector to report


@dataclass(slots=True)
class Stamp:
    """One record's stamp, written as the raw record's `seq` (the fields of worktool.models.GatewaySeq;
    a plain dataclass because it is made once per request)."""

    gw: str
    n: int
    void: list[int] = field(default_factory=list)


class Sequencer:
    """Numbers for one gateway process (the event loop is its only user: no lock)."""

    def __init__(self, boot_id: str | None = None) -> None:
        self.boot_id = boot_id or uuid.uuid4().hex[:16]
        self._n = 0
        self._void: list[int] = []

    def take(self) -> Stamp:
        self._n += 1
        if not self._void:
            return Stamp(self.boot_id, self._n)
        void, self._void = self._void[:MAX_VOID], self._void[MAX_VOID:]
        return Stamp(self.boot_id, self._n, void)

    def give_back(self, seq: Stamp) -> None:
        """`seq` was not acknowledged: its number (and the voids it carried) go with the next record."""
        self._void.extend(seq.void)
        self._void.append(seq.n)
