"""End-to-end loss detection (docs/rules.md §9): compare what the gateways acknowledged with what the
dataflow processed. Pure: the clock is passed in as ticks; every decision is stamped with event time.

Every raw record a gateway acknowledges carries `seq` = (gw: the gateway process's boot id, n: 1, 2, 3,
...; `void`: numbers it took but never acknowledged). A number that has not arrived when a higher one of
the same gateway has is *missing*; the hole is noticed at the event time of the record that revealed it.
Records can arrive out of order (partitions interleave, the spool delivers late), so a hole is reported
only when the watermark passes `noticed + grace`:

    hole [lo, hi] still (partly) missing at noticed + grace
        -> a `pipeline_gap` event (status open) and the gateway's `pipeline_gap` alert (operators/alerts.py)
    a missing number arrives later
        -> a `pipeline_gap` event with the corrected count; once the hole is filled, status closed, and
           when no reported hole of that gateway is left, its alert is cancelled (problem_solved)

The first number seen of a gateway starts its count (a dataflow that starts from scratch cannot know
what came before), and the last records of a gateway that stopped are not detectable (no higher number
follows): the detector finds records lost *between* acknowledged ones, such as those a broker lost when
it restarted empty. A gateway restart is a new boot id, tracked separately; an idle gateway's count is
forgotten after `retention`, a reported hole too (its alert expires on its own).

One step instance sees every gateway's numbers (the flow keys it by a single key), so its state is the
whole picture, and its snapshot is plain data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from operators.alerts import Alert, AlertRules, Out, Trigger
from operators.timers import ShardClock, Tick
from worktool.events import PipelineGap

SNAPSHOT_VERSION = 1
GAP_KEY = "gaps"  # the single key of the gaps step


# Not frozen: one is built for every record, and a frozen dataclass's __init__ sets each field through
# object.__setattr__ (0.5 µs a mark, 0.2 µs without).
@dataclass(slots=True)
class SeqMark:
    """One processed raw record's stamp: gateway boot id, number, the record's `received_at`, and the
    numbers the gateway voided (took but never acknowledged)."""

    gw: str
    n: int
    at: datetime
    void: tuple[int, ...] = ()


@dataclass(slots=True)
class Hole:
    """Numbers [lo, hi] found missing at `noticed`; `open` are the sub-ranges still missing."""

    hole_id: str
    gw: str
    lo: int
    hi: int
    noticed: datetime
    open: list[list[int]]
    reported: bool = False

    @property
    def missing(self) -> int:
        return sum(b - a + 1 for a, b in self.open)

    def take(self, n: int) -> bool:
        """Remove `n` from the open ranges; False if it was not missing."""
        for i, (a, b) in enumerate(self.open):
            if a <= n <= b:
                parts = [[a, n - 1]] if a < n else []
                parts += [[n + 1, b]] if n < b else []
                self.open[i : i + 1] = parts
                return True
        return False


@dataclass(slots=True)
class Gateway:
    high: int
    last: datetime
    holes: list[Hole]


class GapDetector:
    """Per gateway: the highest number seen and the holes below it."""

    def __init__(self, grace: timedelta, retention: timedelta = timedelta(days=1)) -> None:
        self.grace = grace
        self.retention = retention
        self.gateways: dict[str, Gateway] = {}

    # -- records --------------------------------------------------------------------------------

    def seen(self, mark: SeqMark) -> list[tuple[str, Hole]]:
        """Apply one mark. Returns the reported holes it changed, as ("corrected" | "closed", hole)."""
        g = self.gateways.get(mark.gw)
        if g is None:
            g = self.gateways[mark.gw] = Gateway(high=min((mark.n, *mark.void)) - 1, last=mark.at, holes=[])
        if mark.at > g.last:
            g.last = mark.at
        if mark.n == g.high + 1 and not mark.void:  # the next number (most marks): no hole made or filled
            g.high = mark.n
            return []
        changed: list[tuple[str, Hole]] = []
        for n in (*sorted(mark.void), mark.n):
            if n > g.high:
                if n > g.high + 1:
                    lo, hi = g.high + 1, n - 1
                    hole_id = (
                        "gap_" + hashlib.blake2b(f"{mark.gw}\x1f{lo}".encode(), digest_size=8).hexdigest()
                    )
                    g.holes.append(Hole(hole_id, mark.gw, lo, hi, mark.at, [[lo, hi]]))
                g.high = n
                continue
            for hole in g.holes:
                if hole.lo <= n <= hole.hi and hole.take(n):
                    if hole.reported:
                        changed.append(("closed" if not hole.open else "corrected", hole))
                    break
        g.holes = [h for h in g.holes if h.open]
        return changed

    # -- time -----------------------------------------------------------------------------------

    def due(self, watermark: datetime) -> list[Hole]:
        """Holes still missing numbers `grace` after they were noticed, reported now (once each); forgets
        idle gateways and old reported holes."""
        out = []
        for gw, g in list(self.gateways.items()):
            for hole in g.holes:
                if not hole.reported and hole.noticed + self.grace <= watermark:
                    hole.reported = True
                    out.append(hole)
            g.holes = [h for h in g.holes if not (h.reported and h.noticed + self.retention < watermark)]
            if not g.holes and g.last + self.retention < watermark:
                del self.gateways[gw]
        return out

    def open_holes(self, gw: str) -> list[Hole]:
        g = self.gateways.get(gw)
        return [h for h in g.holes if h.reported] if g else []

    # -- snapshot -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            gw: (g.high, g.last, [(h.hole_id, h.lo, h.hi, h.noticed, h.open, h.reported) for h in g.holes])
            for gw, g in self.gateways.items()
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.gateways = {
            gw: Gateway(
                high,
                last,
                [Hole(i, gw, lo, hi, t, [list(r) for r in o], rep) for i, lo, hi, t, o, rep in holes],
            )
            for gw, (high, last, holes) in data.items()
        }


TEXT = "网关 {gw} 已确认的 {missing} 条记录未到达数据流（序号 {lo}–{hi}），请检查消息队列"


class GapStep:
    """The gaps step: SeqMarks and Ticks in; `pipeline_gap` events, the gateway's alert transitions and
    their notification commands out."""

    def __init__(self, grace: timedelta, rules: AlertRules, retention: timedelta = timedelta(days=1)) -> None:
        self.detector = GapDetector(grace, retention)
        self.rules = rules
        self.clock = ShardClock()
        self.alerts: dict[str, dict[str, Alert]] = {}  # subject ("gateway:<gw>") -> alert_key -> Alert

    def on_item(self, item: SeqMark | Tick) -> list[Out]:
        if isinstance(item, Tick):
            return self._tick(item.at)
        out: list[Out] = []
        for status, hole in self.detector.seen(item):
            out.append(self._event(hole, status, item.at))
            if not self.detector.open_holes(hole.gw):
                out += self._close(hole.gw, item.at)
        return out

    def _tick(self, watermark: datetime) -> list[Out]:
        if not self.clock.advance(watermark):
            return []
        out: list[Out] = []
        while (timer := self.clock.next_due(watermark)) is not None:
            out += self.rules.on_timer(self.alerts.get(timer.key, {}), self.clock, timer)
        for hole in self.detector.due(watermark):
            at = hole.noticed + self.detector.grace
            out.append(self._event(hole, "open", at))
            subject = f"gateway:{hole.gw}"
            content = TEXT.format(gw=hole.gw, missing=hole.missing, lo=hole.lo, hi=hole.hi)
            trigger = Trigger(alert_type="pipeline_gap", subject=subject, at=at, content=content)
            out += self.rules.trigger(self.alerts.setdefault(subject, {}), self.clock, trigger)
        for subject in [
            s for s, alerts in self.alerts.items() if not any(a.is_open for a in alerts.values())
        ]:
            del self.alerts[subject]  # closed: nothing left to act on
        return out

    def _close(self, gw: str, at: datetime) -> list[Out]:
        return self.rules.cancel_on(
            "gap_filled", self.alerts.get(f"gateway:{gw}", {}), self.clock, at, by="pipeline"
        )

    @staticmethod
    def _event(hole: Hole, status: str, at: datetime) -> Out:
        return PipelineGap.make(
            gap_id=hole.hole_id, gateway=hole.gw, first_seq=hole.lo, last_seq=hole.hi,
            missing=hole.missing, arrived=hole.hi - hole.lo + 1 - hole.missing, status=status,
        ).at(at)  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "detector": self.detector.snapshot(),
            "clock": self.clock.snapshot(),
            "alerts": {s: {k: a.snapshot() for k, a in alerts.items()} for s, alerts in self.alerts.items()},
        }

    @classmethod
    def restore(
        cls,
        grace: timedelta,
        rules: AlertRules,
        data: dict[str, Any],
        retention: timedelta = timedelta(days=1),
    ) -> GapStep:
        if data.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown gaps snapshot version {data.get('v')!r}")
        step = cls(grace, rules, retention)
        step.detector.restore(data["detector"])
        step.clock = ShardClock.restore(data["clock"])
        step.alerts = {
            s: {k: Alert.restore(a) for k, a in alerts.items()} for s, alerts in data["alerts"].items()
        }
        return step
