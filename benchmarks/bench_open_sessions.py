"""Event-time rules at scale (not a test): records per second through the whole flow with many open
sessions and a realistic alert mix, and the state each open session costs.

    .venv/bin/python benchmarks/bench_open_sessions.py [--sessions 100000] [--rounds 2] [--smoke]

--smoke: a tiny run (300 sessions) that checks the benchmark still works, for CI; its rates mean nothing.

The synthetic stream: every session (a group) gets `rounds` messages in the working day, in time order:
owners' small talk and questions (most), complaints (~3 %), private operations (~3 %), after-sales
requests (~8 %), staff answers (~15 %, opening staff windows), operators' harsh words (~2 %). Every alert,
window, wait and reply is a timer in the shard state; nothing expires within the run (alerts stay open
24 h), so at the end every touched session is open.

Measured:
1. the whole flow (parse, shard, dedup, classify with the rules, sessions with every rule), replayed
   in-process through bytewax (`run_main`), events to a counting sink: records per second;
2. the sessions step alone on the same items (no bytewax, no classification): records per second;
3. state bytes per open session: the pickled size of the sessions step's snapshot (what bytewax stores
   per shard at each epoch) divided by the sessions it holds;
4. what one epoch's snapshot costs with every session held: building it (bytewax calls `snapshot()` at
   every epoch, with or without recovery; since v4 this pickles the buckets holding a changed key),
   and pickling it (with recovery only), the first one (everything new, as after a restart), after a
   snapshot and after 1 % of the sessions got a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import pickle
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataflows.flow import FlowOptions, FlowSinks, build_flow  # noqa: E402
from dataflows.sources import ArchiveSource  # noqa: E402
from operators.classify import RuleClassifier  # noqa: E402
from operators.parse import parse_message  # noqa: E402
from operators.sessions import SessionPolicy, SessionStep  # noqa: E402
from operators.shard import ClassifiedMessage  # noqa: E402
from operators.timers import Tick  # noqa: E402
from worktool.config import BusinessConfig  # noqa: E402
from worktool.models import RawRecord  # noqa: E402

START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
CONFIG = BusinessConfig.model_validate(
    {
        "robots": [
            {"robot_id": "wt_monitor", "name": "监控助手", "role": "monitor"},
            {"robot_id": "wt_notify", "name": "通知助手", "role": "notify"},
            {"robot_id": "wt_day", "name": "运营助理小A", "role": "reply_day"},
            {"robot_id": "wt_night", "name": "运营助理小夜", "role": "reply_night"},
        ],
        "staff": ["售后-小李", "售后-小张"],
        "operators": ["运营-老周"],
    }
)
MIX = [  # (weight, sender, text)
    (40, "owner", "佣金什么时候结算？能日结吗"),
    (14, "owner", "好的收到"),
    (8, "owner", "我的视频号发不了作品，需要扫码认证吗"),
    (3, "owner", "我要投诉你们，说好的一天300到500呢"),
    (3, "owner", "我把橱窗里的商品删了"),
    (15, "staff", "您好，扫码后点击确认，等两分钟就可以了"),
    (2, "operator", "马上给我配合扫码！！！别废话"),
    (15, "owner", "今天直播几点开始呀"),
]
SENDERS = {"staff": "售后-小李", "operator": "运营-老周"}


def stream(sessions: int, rounds: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    weights = [w for w, _, _ in MIX]
    span = timedelta(hours=10).total_seconds()
    records = []
    for r in range(rounds):
        for s in range(sessions):
            _, who, text = rng.choices(MIX, weights)[0]
            sender = SENDERS.get(who) or f"号主{s % 97}-{s}"
            at = START + timedelta(seconds=span * (r * sessions + s) / (rounds * sessions))
            body = {"spoken": text, "rawSpoken": text, "receivedName": sender, "groupName": f"群{s}",
                    "groupRemark": "", "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip
            records.append(orjson.dumps({"kind": "message", "robot_id": "wt_day",
                                         "received_at": at.isoformat().replace("+00:00", "Z"), "body": body}))  # fmt: skip
    return records


class _Count(StatelessSinkPartition):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    def write_batch(self, items: list) -> None:
        for item in items:
            self.counter[getattr(item, "event", type(item).__name__)] += 1


class CountingSink(DynamicSink):
    def __init__(self) -> None:
        self.counter: Counter = Counter()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Count:
        return _Count(self.counter)


def whole_flow(records: list[bytes]) -> tuple[float, Counter]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "archive.jsonl"
        path.write_bytes(b"\n".join(records) + b"\n")
        source = ArchiveSource(path, timedelta(seconds=60), lateness=timedelta(seconds=1))
        sink = CountingSink()
        flow = build_flow(
            source, FlowSinks(events=[sink]), RuleClassifier(CONFIG), FlowOptions(config=CONFIG)
        )
        started = time.perf_counter()
        run_main(flow)
        return time.perf_counter() - started, sink.counter


def step_alone(records: list[bytes]) -> tuple[float, SessionStep]:
    classifier = RuleClassifier(CONFIG)
    items = []
    for raw in records:
        _, m = parse_message(RawRecord.model_validate_json(raw))
        items.append(ClassifiedMessage(m, classifier.classify(m)))
    step = SessionStep(SessionPolicy(CONFIG))
    started = time.perf_counter()
    last_tick = None
    for item in items:
        minute = item.message.received_at.replace(second=0, microsecond=0)
        if minute != last_tick:
            step.on_item(Tick(minute))
            last_tick = minute
        step.on_item(item)
    return time.perf_counter() - started, step


def snapshot_cost(step: SessionStep, records: list[bytes]) -> None:
    """One epoch's snapshot of a step holding every session: built, then pickled (as bytewax does with
    recovery on), right after a snapshot and after 1 % of the sessions got one more message."""
    classifier = RuleClassifier(CONFIG)
    last = max(RawRecord.model_validate_json(r).received_at for r in records[-10:])
    touch = []
    for i, raw in enumerate(records[: max(1, len(step.sessions) // 100)]):
        _, m = parse_message(RawRecord.model_validate_json(raw))
        m = dataclasses.replace(m, received_at=last, message_id=f"{m.message_id}-again{i}")
        touch.append(ClassifiedMessage(m, classifier.classify(m)))
    step.snapshot()
    for label, items in (("nothing touched since the last", []), ("1 % of sessions touched", touch)):
        for item in items:
            step.on_item(item)
        started = time.perf_counter()
        snap = step.snapshot()
        built = time.perf_counter()
        pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
        pickled = time.perf_counter()
        print(f"  one epoch's snapshot, {label}: build {1000 * (built - started):,.0f} ms, "
              f"pickle {1000 * (pickled - built):,.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny run for CI (300 sessions)")
    args = parser.parse_args()
    if args.smoke:
        args.sessions = 300
    records = stream(args.sessions, args.rounds)
    print(f"{len(records):,} records over {args.sessions:,} sessions")

    elapsed, step = step_alone(records)
    open_sessions = sum(1 for sid in step.sessions if step.clock.pending(sid))
    started = time.perf_counter()
    snapshot = pickle.dumps(step.snapshot(), protocol=pickle.HIGHEST_PROTOCOL)
    first = time.perf_counter() - started
    print(f"sessions step alone: {len(records) / elapsed:,.0f} records/s ({elapsed:.1f} s)")
    print(f"  {len(step.sessions):,} sessions held, {open_sessions:,} with something open, "
          f"{step.clock.pending():,} timers pending")  # fmt: skip
    print(f"  snapshot {len(snapshot) / 1e6:.1f} MB = {len(snapshot) / max(1, len(step.sessions)):,.0f} bytes "
          f"per session")  # fmt: skip
    print(f"  first snapshot (everything new, as after a restart): build and pickle {1000 * first:,.0f} ms")
    snapshot_cost(step, records)

    elapsed, counts = whole_flow(records)
    print(f"whole flow (bytewax run_main, rules): {len(records) / elapsed:,.0f} records/s ({elapsed:.1f} s)")
    for name, n in counts.most_common():
        print(f"  {name:22s} {n:>9,}")
    if args.smoke:
        assert counts["message_classified"] == len(records), counts
        assert counts["alert_raised"] and counts["reply_scheduled"] and counts["command_created"], counts


if __name__ == "__main__":
    main()
