"""Local durable spool: where records go while the broker cannot take them.

A spool is a directory of append-only segment files (`000000000001.jsonl`, ...), one JSON line per
record. `append` returns only after write + flush + fsync, so a record the gateway acknowledged survives
a crash. A crash during a write can leave a torn last line: readers ignore it (its request was never
acknowledged) and a restarted spool never appends to an old segment, so nothing is glued to a torn line.
The drainer seals the active segment, reads segments oldest first and deletes one only after the broker
acknowledged every record in it.

`Spool` is plain, thread-safe file logic; `SpoolWriter` adds group commit for asyncio callers
(concurrent appends share one write and one fsync, done off the event loop).

Several gateway workers each claim their own slot directory (`claim_slot`) with an exclusive flock,
so two processes never append to or drain the same files.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson

log = logging.getLogger(__name__)

SEGMENT_BYTES = 8 * 1024 * 1024
_SEGMENT_RE = re.compile(r"^(\d{12})\.jsonl$")


# ---------------------------------------------------------------------------------------------
# One line of the spool: where the record goes and the record itself (kept as JSON, not re-encoded).


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    topic: str
    key: str | None
    value: bytes  # a JSON document (RawRecord / DlqRecord .to_json())


def encode_entry(entry: SpoolEntry) -> bytes:
    # Fragment embeds the value's JSON as it is; orjson never emits a raw newline, so this is one line.
    return orjson.dumps({"topic": entry.topic, "key": entry.key, "value": orjson.Fragment(entry.value)})


def decode_entry(line: bytes) -> SpoolEntry:
    """Inverse of encode_entry. orjson output round-trips byte for byte through loads + dumps, so the
    drained value equals the one first produced (the dataflow de-duplicates identical records)."""
    obj = orjson.loads(line)
    return SpoolEntry(topic=obj["topic"], key=obj["key"], value=orjson.dumps(obj["value"]))


# ---------------------------------------------------------------------------------------------


def read_records(path: Path) -> list[bytes]:
    """The complete lines of a segment. A last line without its newline is a write torn by a crash."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn = lines.pop()
    if torn:
        log.warning("spool segment %s: ignoring a torn last line of %d bytes", path.name, len(torn))
    return [line for line in lines if line]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only JSON-lines segments in one directory. Thread-safe."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES):
        self.directory = Path(directory)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        # Records per segment (complete lines), oldest segment first.
        self._counts: dict[Path, int] = {p: len(read_records(p)) for p in self._scan()}
        seqs = [int(_SEGMENT_RE.match(p.name).group(1)) for p in self._counts]  # type: ignore[union-attr]
        self._next_seq = max(seqs, default=0) + 1
        # Always a fresh segment after a restart: an old one may end in a torn line.
        self._active: IO[bytes] | None = None
        self._active_path: Path | None = None
        self._active_size = 0

    def _scan(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if _SEGMENT_RE.match(p.name))

    @property
    def depth(self) -> int:
        """Records in the spool (appended and not yet removed)."""
        return sum(self._counts.values())

    def append(self, lines: Sequence[bytes]) -> None:
        """Append lines (each without a newline) and make them durable before returning."""
        if not lines:
            return
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            if self._active is None:
                self._open_segment()
            assert self._active is not None and self._active_path is not None
            try:
                self._active.write(data)
                self._active.flush()
                os.fsync(self._active.fileno())
            except BaseException:
                # The segment may now end in a partial line: never append after it.
                self._close_active()
                raise
            self._counts[self._active_path] += len(lines)
            self._active_size += len(data)
            if self._active_size >= self._segment_bytes:
                self._close_active()

    def seal(self) -> None:
        """Close the active segment: the next append starts a new one, so this one can be drained."""
        with self._lock:
            self._close_active()

    def sealed_segments(self) -> list[Path]:
        """Segments no longer appended to, oldest first."""
        with self._lock:
            return [p for p in self._counts if p != self._active_path]

    def remove(self, path: Path) -> None:
        """Delete a drained segment."""
        with self._lock:
            if path == self._active_path:
                raise ValueError("cannot remove the active segment; seal it first")
            path.unlink(missing_ok=True)
            _fsync_dir(self.directory)
            self._counts.pop(path, None)

    def close(self) -> None:
        with self._lock:
            self._close_active()

    def _open_segment(self) -> None:
        path = self.directory / f"{self._next_seq:012d}.jsonl"
        self._next_seq += 1
        # Full message bodies: this user's only (0600), whatever the umask.
        self._active = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        _fsync_dir(self.directory)  # the new file's directory entry must survive a crash too
        self._active_path = path
        self._active_size = 0
        self._counts[path] = 0

    def _close_active(self) -> None:
        if self._active is not None:
            self._active.close()
        self._active = None
        self._active_path = None
        self._active_size = 0


class SpoolWriter:
    """Group commit for asyncio: appends that arrive while a write + fsync is running are written
    together by the next one, so a burst of requests costs a few fsyncs, not one each."""

    def __init__(self, spool: Spool):
        self.spool = spool
        # A thread of its own: a busy shared pool (health probes, producer shutdowns) never delays an fsync.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="spool-writer")
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flushing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def busy(self) -> bool:
        """True while some append has not finished (the drainer must not call the spool empty)."""
        return self._flushing or bool(self._pending)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def submit(self, line: bytes) -> asyncio.Future[None]:
        """Queue a line and return at once; the future completes when it is durable. From this call on
        the writer is `busy` until the line is counted in the spool's depth, so a caller that checks
        `busy` and the depth without awaiting in between never misses a line on its way."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((line, future))
        if not self._flushing:
            self._flushing = True
            self._idle.clear()
            asyncio.get_running_loop().create_task(self._flush())
        return future

    async def append(self, line: bytes) -> None:
        await self.submit(line)

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    lines = [line for line, _ in batch]
                    await asyncio.get_running_loop().run_in_executor(self._executor, self.spool.append, lines)
                except Exception as e:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(e)
                else:
                    for _, future in batch:
                        if not future.done():
                            future.set_result(None)
        finally:
            self._flushing = False
            self._idle.set()


# ---------------------------------------------------------------------------------------------


class SlotLock:
    """An exclusive claim on one spool directory, held for the life of the process."""

    def __init__(self, directory: Path, fd: int):
        self.directory = directory
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1


def try_lock(directory: Path) -> SlotLock | None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return SlotLock(directory, fd)


def claim_slot(base: Path, max_slots: int = 64) -> SlotLock:
    """Lock the first free slot directory `base/0`, `base/1`, ... (one per gateway worker process)."""
    for index in range(max_slots):
        lock = try_lock(base / str(index))
        if lock is not None:
            return lock
    raise RuntimeError(f"no free spool slot under {base} (all {max_slots} are locked)")


def orphan_slots(base: Path, own: Path) -> list[SlotLock]:
    """Slots that hold segments but no live process (left by a crash or by a run with more workers):
    lock them so this process can drain them."""
    if not base.is_dir():
        return []
    claimed = []
    for directory in sorted(base.iterdir()):
        if (
            directory == own
            or not directory.is_dir()
            or not any(_SEGMENT_RE.match(p.name) for p in directory.iterdir())
        ):
            continue
        lock = try_lock(directory)
        if lock is not None:
            claimed.append(lock)
    return claimed
