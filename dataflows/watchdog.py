"""A time budget per record and step: no input can stall the dataflow (docs/architecture.md).

Each guarded step (dedup, classify, sessions) marks the record it works on: `StepBudget.run(step, item,
fn)`. The marker lives twice: as Python objects for the watchdog thread of this process, and in a small
memory-mapped file (`<data dir>/watchdog/inflight.bin`) that outlives the process, for the case where
no thread of it can run any more (C code holding the GIL).

1. Over budget: the watchdog thread raises `StepBudgetExceeded` in the step's thread
   (`PyThreadState_SetAsyncExc`); the step turns the record into a DLQ record naming the step (stage
   `dataflow`) and the flow goes on. This stops any Python-level loop.
2. Still running after a second budget (C code that never returns to the interpreter): the record's
   identity goes to the poison list (`<data dir>/watchdog/poison.jsonl`, fsync'd) and the process exits
   with code 70; `worktool up` restarts it. The supervisor does the same from outside when the
   heartbeat goes stale (commands/up.py: `poison_in_flight` then kill), for a process whose watchdog
   thread cannot run at all.
3. On start the poison list is loaded: a record on it is dead-lettered by the step it stalled, and
   skipped (`worktool_dataflow_poison_skipped_total`), instead of being re-read and stalling again.

The identity of a record is its message id (content-derived, the same on every read), else the kind,
robot and receive time of a robot record, else a hash of its JSON description.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dataflows.metrics import POISON_SKIPPED, STEP_BUDGET_EXCEEDED, STEP_FAILURES
from worktool.models import DlqRecord, utc_now

log = logging.getLogger(__name__)

EXIT_STALLED = 70  # the process exit code after a record that could not be interrupted
_LAYOUT = struct.Struct("<d32sH200s")  # start (wall clock, 0 = idle), step, id length, id
_POISON_KEEP = 1000  # the newest entries kept when the list is loaded


class StepBudgetExceeded(Exception):  # noqa: N818 (raised in the step's thread by the watchdog)
    """Raised inside a step by the watchdog when its record is over the budget."""


def watchdog_dir(data_dir: Path, process_id: int | None = None) -> Path:
    """Per process of a cluster (they may share the data directory): process 0 keeps the old place."""
    return data_dir / ("watchdog" if not process_id else f"watchdog-{process_id}")


def _describe(value: Any) -> str:
    from dataflows.stateful import describe

    return describe(value)


def item_id(item: Any) -> str:
    """A stable identity of a step's item across reads of the same record."""
    value = item[1] if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) else item
    message = getattr(value, "message", value)
    mid = getattr(message, "message_id", None)
    if isinstance(mid, str) and mid:
        return mid
    kind, robot, at = (getattr(value, f, None) for f in ("kind", "robot_id", "received_at"))
    if kind is not None and at is not None:
        return f"{kind}:{robot}:{at.isoformat()}"
    tick_at = getattr(value, "at", None)
    if type(value).__name__ == "Tick" and tick_at is not None:
        return f"tick:{tick_at.isoformat()}"
    return "h:" + hashlib.sha256(_describe(value).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------- poison list


class PoisonList:
    """(step, record id) pairs that stalled a step before: skipped (dead-lettered) when seen again."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[tuple[str, str], str] = {}
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-_POISON_KEEP:]:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                    e = orjson.loads(line)
                    self.entries[(e["step"], e["id"])] = e.get("reason", "")

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.entries

    def __bool__(self) -> bool:
        return bool(self.entries)

    def add(self, step: str, record_id: str, reason: str) -> None:
        self.entries[(step, record_id)] = reason
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps({"step": step, "id": record_id, "reason": reason, "at": utc_now().isoformat()})
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)


def read_in_flight(path: Path) -> tuple[str, str, float] | None:
    """(step, record id, wall-clock start) of the record a process was working on, or None if idle."""
    try:
        data = path.read_bytes()[: _LAYOUT.size]
    except OSError:
        return None
    if len(data) < _LAYOUT.size:
        return None
    start, step, n, rid = _LAYOUT.unpack(data)
    if start <= 0 or n > len(rid):
        return None
    return step.rstrip(b"\0").decode(errors="replace"), rid[:n].decode(errors="replace"), start


def poison_in_flight(directory: Path, budget_s: float, why: str) -> tuple[str, str] | None:
    """From outside the process (the supervisor, before it kills a stalled dataflow): put the record
    in flight on the poison list when it has been running for longer than the budget."""
    found = read_in_flight(directory / "inflight.bin")
    if found is None:
        return None
    step, rid, start = found
    if time.time() - start < budget_s:
        return None
    PoisonList(directory / "poison.jsonl").add(step, rid, f"{why}; {time.time() - start:.0f} s in {step}")
    return step, rid


# ---------------------------------------------------------------------------------------- budget


class StepBudget:
    """The budget of every guarded step, and the watchdog thread enforcing it.

    `on_stuck(step, record_id)` is called (from the watchdog thread) when a record could not be
    interrupted; the live flow exits there (`exit_stalled`), tests may record it."""

    def __init__(
        self,
        budget_s: float,
        directory: Path | None = None,
        on_stuck: Callable[[str, str], None] | None = None,
    ) -> None:
        self.budget_s = budget_s
        self.directory = directory
        self.poison = PoisonList(directory / "poison.jsonl" if directory else None)
        if self.poison:
            log.warning("%d poison record(s) will be dead-lettered and skipped", len(self.poison.entries))
        self.on_stuck = on_stuck or exit_stalled
        self._lock = threading.Lock()
        self._token = 0
        self._current: tuple[int, int, str, str, float] | None = None  # token, thread, step, id, start
        self._fired: set[int] = set()
        self._mm: mmap.mmap | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "inflight.bin"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, _LAYOUT.size)
                self._mm = mmap.mmap(fd, _LAYOUT.size)
            finally:
                os.close(fd)
            self._mm[:8] = struct.pack("<d", 0.0)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- in the step's thread -------------------------------------------------------------------

    def run(self, step: str, item: Any, fn: Callable[[Any], list[Any]]) -> list[Any]:
        """`fn(item)`, or a DLQ record if the item is poison or runs over the budget."""
        self._ensure_watchdog()
        rid = item_id(item)
        if self.poison and (step, rid) in self.poison:
            POISON_SKIPPED.labels(step).inc()
            STEP_FAILURES.labels(step).inc()
            log.error("step %s: record %s is on the poison list; dead-lettered and skipped", step, rid)
            return [self._dead_letter(step, item, f"poison: {self.poison.entries[(step, rid)]}")]
        token = 0
        try:
            token = self._enter(step, rid)
            out = fn(item)
            if self._leave(token):
                raise StepBudgetExceeded  # finished, but only just after the watchdog fired
            return out
        except StepBudgetExceeded:
            self._leave(token)
            STEP_BUDGET_EXCEEDED.labels(step).inc()
            STEP_FAILURES.labels(step).inc()
            log.error(
                "step %s: record %s ran over the %.1f s budget; dead-lettered", step, rid, self.budget_s
            )
            return [self._dead_letter(step, item, f"over the step budget of {self.budget_s:g} s")]

    def _enter(self, step: str, rid: str) -> int:
        with self._lock:
            self._token += 1
            start = time.time()
            self._current = (self._token, threading.get_ident(), step, rid, start)
            if self._mm is not None:
                encoded = rid.encode()[:200]
                self._mm[:] = _LAYOUT.pack(start, step.encode()[:32], len(encoded), encoded)
            return self._token

    def _leave(self, token: int) -> bool:
        """Clears the marker (idempotent); True when the watchdog fired for this token. A pending
        interrupt not yet delivered is cancelled."""
        with self._lock:
            if self._current is not None and self._current[0] == token:
                self._current = None
                if self._mm is not None:
                    self._mm[:8] = struct.pack("<d", 0.0)
            fired = token in self._fired
            if fired:
                self._fired.discard(token)
                _async_raise(threading.get_ident(), None)
            return fired

    def _dead_letter(self, step: str, item: Any, reason: str) -> DlqRecord:
        value = item[1] if isinstance(item, tuple) and len(item) == 2 else item
        message = getattr(value, "message", value)
        at = getattr(message, "received_at", None) or getattr(value, "at", None) or utc_now()
        return DlqRecord(
            stage="dataflow",
            reason=f"{step}: {reason}"[:2000],
            received_at=at,
            robot_id=getattr(message, "robot_id", None),
            kind="message" if hasattr(message, "message_id") else getattr(value, "kind", None),
            raw=_describe(value),
        )

    # -- the watchdog thread ----------------------------------------------------------------------

    def _ensure_watchdog(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="step-watchdog", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        interval = min(0.5, self.budget_s / 4)
        while not self._stop.wait(interval):
            with self._lock:
                current = self._current
                if current is None:
                    continue
                token, thread, step, rid, start = current
                over = time.time() - start - self.budget_s
                if over < 0:
                    continue
                if token not in self._fired:
                    self._fired.add(token)
                    log.error(
                        "step %s: record %s over its %.1f s budget; interrupting it", step, rid, self.budget_s
                    )
                    _async_raise(thread, StepBudgetExceeded)
                    continue
                if over < self.budget_s:
                    continue
                self._current = None
            # Not interrupted after a second budget: C code that does not return to the interpreter.
            reason = f"stalled {step} for over {2 * self.budget_s:g} s and could not be interrupted"
            self.poison.add(step, rid, reason)
            STEP_BUDGET_EXCEEDED.labels(step).inc()
            log.critical("step %s: record %s %s; on the poison list, exiting", step, rid, reason)
            self.on_stuck(step, rid)


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None
    )


def exit_stalled(step: str, record_id: str) -> None:
    """The live flow's last resort: the supervisor restarts the process and the record is skipped."""
    logging.shutdown()
    os._exit(EXIT_STALLED)
