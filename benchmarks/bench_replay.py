"""`worktool replay` of a big day (not a test): one worker against `--workers N`, in the same run.

    .venv/bin/python benchmarks/bench_replay.py [--records 1000000] [--workers 2] [--archive PATH] [--smoke]

The archive is benchmarks/make_sample_day.py's `--records` day (zstd, written once to --archive, or to
a temporary file), replayed by the command line as a user runs it (`python -m commands.cli replay
ARCHIVE --out FILE --workers W --until END`): wall time from start to exit (start-up included), records
per second, the peak memory of one process, and whether both runs wrote the same events (as a multiset
of lines: an order-free digest). `--smoke` replays a tiny day (500 records) so CI keeps this running.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.archive_io import open_writer  # noqa: E402

UNTIL = "2025-03-13T12:00:00+08:00"  # the day after the big day: every timer of the day is due


def make_archive(path: Path, records: int) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import orjson
    from make_sample_day import big_day

    with open_writer(path) as f:
        for rec in big_day(records):
            f.write(orjson.dumps(rec) + b"\n")


def digest(path: Path) -> tuple[int, str]:
    """Lines and an order-free digest of them (sum of per-line hashes)."""
    total, lines = 0, 0
    with path.open("rb") as f:
        for line in f:
            total = (total + int.from_bytes(hashlib.blake2b(line, digest_size=16).digest(), "big")) % (
                1 << 128
            )
            lines += 1
    return lines, f"{total:032x}"


def replay(archive: Path, out: Path, workers: int) -> tuple[float, float, str, int]:
    """Wall seconds of one `worktool replay`, its CPU seconds (every process), what it says of its
    workers' CPU, and the peak RSS (kB) of the largest process so far."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "commands.cli", "replay", str(archive), "--out", str(out)]
        + ["--workers", str(workers), "--until", UNTIL, "--no-progress"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay --workers {workers} failed:\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    said = next((x for x in done.stderr.splitlines() if x.startswith("workers' CPU")), "")
    return elapsed, cpu, said, after.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--archive", type=Path, help="reuse (or write once) this archive")
    ap.add_argument("--smoke", action="store_true", help="a tiny day, for CI")
    args = ap.parse_args()
    records = 500 if args.smoke else args.records
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        archive = args.archive or Path(tmp) / f"day-{records}.jsonl.zst"
        if not archive.exists():
            started = time.perf_counter()
            make_archive(archive, records)
            print(f"archive: {records} records, {archive.stat().st_size / 1e6:.1f} MB "
                  f"({time.perf_counter() - started:.1f} s to write) -> {archive}")  # fmt: skip
        print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (2 cores)")
        results = {}
        for workers in sorted({1, args.workers}):
            out = Path(tmp) / f"events-{workers}.jsonl"
            elapsed, cpu, said, rss = replay(archive, out, workers)
            results[workers] = digest(out)
            out.unlink()
            print(
                f"replay --workers {workers}: {records} records in {elapsed:.1f} s -> "
                f"{records / elapsed:,.0f} records/s; CPU {cpu:.1f} s {said}; {results[workers][0]} events; "
                f"peak RSS so far {rss / 1024:.0f} MB; load {os.getloadavg()[0]:.2f}"
            )
        same = len(set(results.values())) == 1
        print(f"same events: {same}")
        if not same:
            raise SystemExit("the replays wrote different events")


if __name__ == "__main__":
    main()
