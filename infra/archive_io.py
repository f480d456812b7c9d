"""Archive files: JSONL, plain or compressed, read and written as streams (never whole in memory).

Writing, the compression is chosen by the file's suffix:

    *.zst, *.zstd   zstandard (level 3, with a content checksum per frame)
    *.gz            gzip
    anything else   plain JSONL

Reading, it is recognised by the file's first bytes (a compressed archive renamed to *.jsonl is still
read), and a corrupt or truncated compressed archive raises `ArchiveError` with the file and the reason
instead of silently ending early (zstandard's own stream reader stops at a cut-off frame without a word).
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import zstandard

Compression = Literal["zstd", "gzip", "plain"]

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # bytes read at a time
ZSTD_LEVEL = 3


class ArchiveError(ValueError):
    """An archive that cannot be read to its end (corrupt or truncated compressed data)."""


def compression_for(path: Path) -> Compression:
    """The compression `open_writer` uses for `path` (by its suffix)."""
    suffix = path.suffix.lower()
    if suffix in (".zst", ".zstd"):
        return "zstd"
    if suffix == ".gz":
        return "gzip"
    return "plain"


def sniff(path: Path) -> Compression:
    """The compression of an existing file (by its first bytes)."""
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "plain"


def open_writer(path: Path) -> IO[bytes]:
    """A binary stream writing `path`, compressed by its suffix. Close it (or use `with`) to finish the
    compressed frame."""
    kind = compression_for(path)
    if kind == "zstd":
        raw = path.open("wb")
        writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).stream_writer(
            raw, closefd=True
        )
        return io.BufferedWriter(writer, buffer_size=CHUNK)  # type: ignore[arg-type] (writelines, fewer calls)
    if kind == "gzip":
        return gzip.open(path, "wb", compresslevel=6)  # type: ignore[return-value]
    return path.open("wb")


def _frames(
    f: IO[bytes], path: Path, new: Callable[[], Any], error: type[Exception], name: str, part: str
) -> Iterator[bytes]:
    """The decompressed bytes of a stream of concatenated frames (zstd frames, gzip members): `new()` makes
    a decompressor for the next one. A frame that never ends is a truncated archive."""
    dobj = new()
    pending = False  # a frame has started and not ended
    while data := f.read(CHUNK):
        while data:
            try:
                out = dobj.decompress(data)
            except error as e:
                raise ArchiveError(f"{path}: corrupt {name} data ({e})") from e
            pending = True
            if out:
                yield out
            if dobj.eof:  # a frame ended: the rest of the input is the next frame
                data, dobj, pending = dobj.unused_data, new(), False
            else:
                data = b""
    if pending:
        raise ArchiveError(f"{path}: truncated {name} archive (the last {part} is incomplete)")


def _zstd_chunks(f: IO[bytes], path: Path) -> Iterator[bytes]:
    new = lambda: zstandard.ZstdDecompressor().decompressobj()  # noqa: E731
    return _frames(f, path, new, zstandard.ZstdError, "zstd", "frame")


def _gzip_chunks(f: IO[bytes], path: Path) -> Iterator[bytes]:
    # gzip files may hold several members
    return _frames(f, path, lambda: zlib.decompressobj(wbits=31), zlib.error, "gzip", "member")


def _plain_chunks(f: IO[bytes], path: Path) -> Iterator[bytes]:
    while data := f.read(CHUNK):
        yield data


def iter_lines(path: Path) -> Iterator[bytes]:
    """The archive's non-empty lines, stripped, in file order; compressed or not (by its first bytes).
    Raises `ArchiveError` (after the last good line) for a corrupt or truncated compressed archive."""
    chunks = {"zstd": _zstd_chunks, "gzip": _gzip_chunks, "plain": _plain_chunks}[sniff(path)]
    with path.open("rb") as f:
        carry = b""
        for chunk in chunks(f, path):
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for line in lines:
                line = line.strip()
                if line:
                    yield line
        carry = carry.strip()
        if carry:
            yield carry


__all__ = ["ArchiveError", "compression_for", "iter_lines", "open_writer", "sniff"]
