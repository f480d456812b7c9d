"""The first pass of a replay over a big archive, with and without recorded LLM answers (not a test).

    .venv/bin/python benchmarks/bench_recorded_answers.py ARCHIVE [--with-answers PATH]

ARCHIVE: a day from benchmarks/make_sample_day.py (`--records 1000000`). Measures, one after the other:
- reading its lines (decompression and splitting): the floor of any pass;
- the replay's scan as it was before recorded answers (count, stamp, order);
- `scan_archive` now (the same, plus a prefix test per line that collects `{"kind":"llm_answer"` lines);
- a pass that only collects answers (what a separate first pass would cost);
then writes the same day with an answer after every message record (a live run that asked the LLM
about every message: the worst case) to `--with-answers` (default: a temporary file), and measures
`scan_archive` on it, the memory its Recordings hold, what pickling them for a sliced replay's workers
costs, and what looking an answer up and applying it costs per message (RecordedClassifier's work).
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402
import psutil  # noqa: E402

from classifiers.llm.classifier import apply_answer  # noqa: E402
from dataflows.sources import _stamp, scan_archive  # noqa: E402
from infra.archive_io import iter_lines, open_writer  # noqa: E402
from operators.recordings import LINE_PREFIX, Recordings  # noqa: E402
from worktool.models import Classification, LlmRecord, to_utc  # noqa: E402

ANSWER = json.dumps(
    {"message_type": "chat_daily", "confidence": 0.86, "reason": "号主在询问结算时间，属于普通咨询",
     "sentiment": 0.1, "need_reply": True}, ensure_ascii=False,
)  # fmt: skip


def timed(what: str, fn):  # type: ignore[no-untyped-def]
    gc.collect()
    started = time.perf_counter()
    result = fn()
    print(f"{what:<58} {time.perf_counter() - started:6.2f} s")
    return result


def old_scan(path: Path) -> int:
    """scan_archive before recorded answers: every line counted, stamped and checked for order."""
    records, last = 0, None
    for line in iter_lines(path):
        records += 1
        ts = _stamp(line)
        if ts is not None and (last is None or ts >= last):
            last = ts
    return records


def answers_only(path: Path) -> Recordings:
    recordings = Recordings()
    for line in iter_lines(path):
        if line.startswith(LINE_PREFIX):
            recordings.add_line(line)
    return recordings


def with_answers(src: Path, dst: Path) -> int:
    n = 0
    with open_writer(dst) as f:
        for i, line in enumerate(iter_lines(src)):
            f.write(line + b"\n")
            if line.startswith(b'{"kind":"message"'):
                at = orjson.loads(line)["received_at"]
                record = LlmRecord(operation="classify", key=f"m_{i:020x}", at=to_utc(at), status="ok",
                                   provider="openai", model="qwen-plus", output=ANSWER,
                                   detail={"scores_reply": False})  # fmt: skip
                f.write(record.to_json() + b"\n")
                n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("archive", type=Path, nargs="?")
    parser.add_argument("--with-answers", type=Path)
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny generated day: shows the benchmark works"
    )
    args = parser.parse_args()
    if args.smoke or args.archive is None:
        if not args.smoke:
            parser.error("ARCHIVE is required (or --smoke)")
        with tempfile.TemporaryDirectory() as tmp:
            args.archive = Path(tmp) / "day.jsonl"
            subprocess.run(
                [sys.executable, str(REPO / "benchmarks" / "make_sample_day.py"), str(args.archive), "--records", "2000"],
                check=True, capture_output=True,
            )  # fmt: skip
            measure(args)
        return
    measure(args)


def measure(args: argparse.Namespace) -> None:
    lines = timed("read the lines (decompress, split)", lambda: sum(1 for _ in iter_lines(args.archive)))
    print(f"  {lines:,} lines")
    timed("scan before recorded answers (count, stamps, order)", lambda: old_scan(args.archive))
    scan = timed("scan_archive now (+ llm_answer prefix test)", lambda: scan_archive(args.archive))
    print(f"  {scan.records:,} records, in order: {scan.in_order}, answers: {len(scan.recordings)}")
    timed("a separate pass collecting answers only", lambda: answers_only(args.archive))

    with tempfile.TemporaryDirectory() as tmp:
        dst = args.with_answers or Path(tmp) / "with-answers.jsonl.zst"
        n = timed("write the day with an answer per message", lambda: with_answers(args.archive, dst))
        print(f"  {n:,} answers, {dst.stat().st_size / 1e6:.1f} MB")
        rss = psutil.Process().memory_info().rss
        scan = timed("scan_archive of the day with answers", lambda: scan_archive(dst))
        held = psutil.Process().memory_info().rss - rss
        print(f"  {scan.records:,} records, {len(scan.recordings):,} answers, RSS +{held / 1e6:.0f} MB "
              f"({held / max(1, len(scan.recordings)):.0f} B an answer, kept as its line)")  # fmt: skip
        blob = timed(
            "pickle them (what a sliced replay sends each worker)", lambda: pickle.dumps(scan.recordings)
        )
        print(f"  {len(blob) / 1e6:.0f} MB")
        timed("unpickle them", lambda: pickle.loads(blob))
        rule = Classification(sender_type="user", message_type="chat_other", confidence=0.4, reason="rules")
        sample = [k for k in list(scan.recordings._by_operation["classify"])[:100_000]]  # noqa: SLF001

        def apply_all() -> None:
            for k in sample:
                record = scan.recordings.get("classify", k)
                assert record is not None and record.output is not None
                apply_answer(record.output, rule, False)

        took = timed(f"get + apply_answer for {len(sample):,} messages", lambda: _per(apply_all))
        print(f"  {took * 1e6 / len(sample):.1f} µs a message")


def _per(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
