"""bytewax adapters for the pure per-shard steps of operators/ (the bytewax idiom: `op.stateful` with a
`StatefulLogic` whose `snapshot()` returns plain data).

The event-time logic never uses bytewax's `notify_at` (wall clock only): time reaches the steps as `Tick`
items (operators/timers.py). Only a wall-clock wait uses it: the reply writer asks to be woken while it
holds a command for its LLM answer (`wake_after`, `on_wake`). Keys are the fixed shards, so a logic is never discarded. `on_eof` emits nothing
but what a step holds for later (the reply writer's commands waiting for their answer): timers still
pending when a replay's archive ends stay pending in the state (and its snapshot); a replay that must see
them fire passes `--until`, which appends ticks up to that time.

One bad item must not stop the flow: an exception raised by a step for one item turns that item into a
DLQ record naming the step, and the flow goes on (the step's state keeps whatever it had changed); so
does one it has not finished within the step budget (dataflows/watchdog.py). A DLQ record reaching a
step (rejected by an earlier one) passes it untouched, so the flow routes every rejection in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import orjson
from bytewax.operators import StatefulLogic

from dataflows.metrics import LATE_RECORDS, STEP_FAILURES
from dataflows.watchdog import StepBudget
from operators.recordings import Recordings
from operators.reply_writer import ReplyGenerator, ReplyWriterStep, WriterPolicy
from worktool.models import DlqRecord, utc_now

log = logging.getLogger(__name__)


class Step(Protocol):
    def on_item(self, item: Any) -> list[Any]: ...

    def snapshot(self) -> Any: ...


S = TypeVar("S", bound=Step)


def describe(item: Any) -> str:
    """A JSON description of an item for a DLQ record (the raw bytes are no longer at hand here)."""

    def default(value: Any) -> Any:
        if hasattr(value, "__dataclass_fields__") or hasattr(value, "__slots__"):
            fields = getattr(value, "__dataclass_fields__", None) or getattr(value, "__slots__", ())
            return {"type": type(value).__name__, **{f: getattr(value, f, None) for f in fields}}
        if hasattr(value, "model_dump"):
            return value.model_dump(mode="json")
        return repr(value)

    try:
        return orjson.dumps(item, default=default).decode()
    except TypeError:
        return repr(item)


class StepLogic(StatefulLogic[Any, Any, Any], Generic[S]):
    """Feeds one shard's items to its step; snapshots the step's plain data.

    `batched`: each value is a list of the shard's items (the flow hands a keyed step one list per shard
    and batch instead of one bytewax item per record: dataflows/flow.py), fed to the step one by one,
    exactly as single items would be; what they give leaves as one list too (none when empty)."""

    def __init__(
        self,
        name: str,
        step: S,
        budget: StepBudget | None = None,
        snapshots: bool = True,
        batched: bool = False,
    ) -> None:
        self.name = name
        self.step = step
        self.budget = budget
        self.snapshots = snapshots  # False: a flow run without recovery (a replay) asks for none
        self.batched = batched
        self._wake_after = getattr(step, "wake_after", None)  # asked after every item: looked up once

    def on_item(self, value: Any) -> tuple[list[Any], bool]:
        if self.batched:
            out: list[Any] = []
            for v in value:
                out += self._one(v)
        else:
            out = self._one(value)
        late = getattr(self.step, "late_records", 0)
        if late:
            LATE_RECORDS.inc(late)
            self.step.late_records = 0  # type: ignore[attr-defined]
        return self._out(out), StatefulLogic.RETAIN

    def _one(self, value: Any) -> list[Any]:
        if isinstance(value, DlqRecord):
            return [value]
        try:
            if self.budget is None:
                return self.step.on_item(value)
            return self.budget.run(self.name, value, self.step.on_item)
        except Exception as e:  # poison item: to the DLQ, never a crashed flow
            return [self._failed(value, e)]

    def _failed(self, value: Any, e: Exception) -> DlqRecord:
        STEP_FAILURES.labels(self.name).inc()
        log.exception("step %s failed on one item; sent to the DLQ", self.name)
        at = getattr(value, "received_at", None) or getattr(value, "at", None) or utc_now()
        return DlqRecord(
            stage="dataflow",
            reason=f"{self.name}: {type(e).__name__}: {e}"[:2000],
            received_at=at,
            robot_id=getattr(value, "robot_id", None),
            raw=describe(value),
        )

    def _out(self, out: list[Any]) -> list[Any]:
        return ([out] if out else []) if self.batched else out

    def notify_at(self) -> datetime | None:
        # A step that holds items for a wall-clock wait (the reply writer's commands waiting for their LLM
        # answer) asks to be woken; every event-time step says None (time comes from ticks).
        if self._wake_after is None:
            return None
        delay = self._wake_after()
        return None if delay is None else datetime.now(UTC) + timedelta(seconds=delay)

    def on_notify(self) -> tuple[list[Any], bool]:
        return self._out(self.step.on_wake()), StatefulLogic.RETAIN  # type: ignore[attr-defined]

    def on_eof(self) -> tuple[list[Any], bool]:
        # A finite input's end: a step holding items for later (the reply writer) lets them go.
        flush = getattr(self.step, "on_eof", None)
        return self._out(flush() if flush is not None else []), StatefulLogic.RETAIN

    def snapshot(self) -> Any:
        # bytewax asks every touched key for its snapshot at every epoch, with or without a recovery
        # store; a flow without one (a replay) throws them away, so it builds none.
        return self.step.snapshot() if self.snapshots else None


def builder(
    name: str,
    new: Callable[[], S],
    restore: Callable[[Any], S],
    budget: StepBudget | None = None,
    snapshots: bool = True,
    batched: bool = False,
) -> Callable[[Any], StepLogic[S]]:
    """`op.stateful` builder: a fresh step for a new shard, or one restored from its snapshot.
    `snapshots=False`: the flow runs without recovery, its steps' snapshots are never built; `batched`:
    the step takes and gives lists of items (`StepLogic`)."""

    def build(resume_state: Any) -> StepLogic[S]:
        step = new() if resume_state is None else restore(resume_state)
        return StepLogic(name, step, budget, snapshots, batched)

    return build


def writer_builder(
    policy: WriterPolicy,
    generator: ReplyGenerator | None,
    recordings: Recordings,
    snapshots: bool = True,
    batched: bool = False,
) -> Callable[[Any], StepLogic[ReplyWriterStep]]:
    """The reply writer's builder (operators/reply_writer.py): no step budget (it never waits)."""
    return builder(
        "replies",
        lambda: ReplyWriterStep(policy, generator, recordings),
        lambda snap: ReplyWriterStep.restore(policy, generator, recordings, snap),
        snapshots=snapshots,
        batched=batched,
    )
