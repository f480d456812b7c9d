"""Snapshots whose cost follows what changed, not what is held.

bytewax asks a stateful step for its `snapshot()` at every epoch (every 2 s live) for every key touched
in the epoch, and ticks touch every shard; with recovery on it pickles what it gets. A shard holding
100 k sessions would pickle all of them every epoch although a handful changed.

`Buckets` keeps a keyed part of a state (sessions, timers by key, users) as pickled buckets: a key
belongs to one bucket by a stable hash (crc32, the same in every process, unlike `hash()`), each key's
plain data is kept (built again only when the key was touched), and a bucket is pickled again only when
one of its keys was touched since the previous snapshot. The snapshot
is a tuple of `bytes`, so pickling it is mostly copying bytes, and an earlier snapshot never changes
(bytes are immutable, the tuple is new each time).

The bucket count follows the number of keys (a power of two, about `per_bucket` keys each): few keys
touched re-pickle few small buckets; when the keys outgrow it, every bucket is rebuilt once. Restoring
does not depend on the count: `load()` merges every bucket's {key: plain data}.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable, Iterable
from typing import Any

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class Buckets:
    """The pickled buckets of one keyed part of a state. `plain(key)` gives a key's plain data, or None
    when the key is gone; `touch(key)` says it changed (or appeared, or left)."""

    __slots__ = ("_plain", "_per_bucket", "_mask", "_members", "_pickled", "_touched")

    def __init__(self, plain: Callable[[str], Any], keys: Iterable[str] = (), per_bucket: int = 8) -> None:
        self._plain = plain
        self._per_bucket = per_bucket
        self._mask = 0
        self._members: list[dict[str, Any]] = [{}]  # per bucket: key -> its plain data
        self._pickled: list[bytes] = [pickle.dumps({}, _PROTOCOL)]
        self._touched: set[str] = set(keys)

    def touch(self, key: str) -> None:
        self._touched.add(key)

    def touch_all(self, keys: Iterable[str]) -> None:
        self._touched.update(keys)

    def __len__(self) -> int:
        return sum(len(m) for m in self._members)

    def snapshot(self) -> tuple[bytes, ...]:
        """The buckets as pickled {key: plain data}; only the touched keys' plain data is built again,
        and only the buckets holding one are pickled again."""
        touched, self._touched = self._touched, set()
        if touched:
            held = sum(len(m) for m in self._members) + len(touched)  # at most
            resized = held > 2 * self._per_bucket * (self._mask + 1)
            if resized:  # before placing the touched keys, so that each is hashed once
                self._resize(held)
            members, mask, plain, dirty = self._members, self._mask, self._plain, set()
            for key in touched:
                b = zlib.crc32(key.encode()) & mask
                dirty.add(b)
                value = plain(key)
                if value is None:
                    members[b].pop(key, None)
                else:
                    members[b][key] = value
            pickled = self._pickled
            for b in range(len(members)) if resized else dirty:
                pickled[b] = pickle.dumps(members[b], _PROTOCOL)
        return tuple(self._pickled)

    def _resize(self, held: int) -> None:
        n = 1
        while n * self._per_bucket < held:
            n *= 2
        entries = [kv for m in self._members for kv in m.items()]
        self._mask = mask = n - 1
        self._members = members = [{} for _ in range(n)]
        self._pickled = [b""] * n
        for key, value in entries:
            members[zlib.crc32(key.encode()) & mask][key] = value

    @classmethod
    def resume(cls, buckets: tuple[bytes, ...], per_bucket: int = 8) -> tuple[Buckets, dict[str, Any]]:
        """Buckets that go on from `snapshot()`'s, and every key's plain data in them. The same bytes
        are kept until their keys change, so the first snapshot after a restart costs no more than any
        other; `bind()` the plain-data function once the state is restored (a snapshot/restore round
        trip must be exact: the restored state gives the plain data the snapshot held)."""
        self = cls(_unbound, (), per_bucket)
        loaded = [pickle.loads(data) for data in buckets]
        merged: dict[str, Any] = {}
        for m in loaded:
            merged.update(m)
        n = len(loaded)
        mask = n - 1
        if (
            n
            and n & mask == 0
            and all(zlib.crc32(k.encode()) & mask == b for b, m in enumerate(loaded) for k in m)
        ):
            self._mask, self._members, self._pickled = mask, loaded, list(buckets)
        else:  # another layout: every key is pickled again at the first snapshot
            self._touched = set(merged)
        return self, merged

    def bind(self, plain: Callable[[str], Any]) -> Buckets:
        self._plain = plain
        return self

    @staticmethod
    def load(buckets: Iterable[bytes]) -> dict[str, Any]:
        """Every key's plain data from `snapshot()`'s buckets."""
        merged: dict[str, Any] = {}
        for data in buckets:
            merged.update(pickle.loads(data))
        return merged


def _unbound(key: str) -> Any:
    raise RuntimeError("Buckets.resume(): bind() the plain-data function first")


__all__ = ["Buckets"]
