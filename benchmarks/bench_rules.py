"""Rule classifier throughput on one core: messages/s over the labelled set, repeated.

    .venv/bin/python benchmarks/bench_rules.py [--messages 100000] [--batch 500] [--repeat 5] [--join 1]

The labelled set (tests/data, about 11 characters a message) is cycled with a per-copy suffix on the
owners' names, so the sender cache sees name churn. `--join N` makes each text message N random texts
of the set joined by "，" (longer messages; the cost grows with the length).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from commands.classify import DEFAULT_DATASET, labelled_message, load_labelled  # noqa: E402
from operators.classify import RuleClassifier  # noqa: E402
from worktool.config import load_config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500, help="messages per classify_batch call")
    ap.add_argument("--copies", type=int, default=50, help="distinct copies of the set (name churn)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    ap.add_argument("--join", type=int, default=1, help="texts of the set joined into one message")
    ap.add_argument("--smoke", action="store_true", help="a tiny run that only shows the benchmark works")
    ap.add_argument(
        "--cache",
        type=int,
        default=None,
        help="owners' classifications kept (default: the classifier's; 0: none)",
    )
    args = ap.parse_args()
    if args.smoke:
        args.messages, args.copies, args.repeat = 1000, 2, 1

    rows = load_labelled(DEFAULT_DATASET)
    config = load_config(DEFAULT_DATASET.parent / "labelled_roster.yaml")
    rng = random.Random(7)
    texts = [r["text"] for r in rows if r["text"]]
    pool = []
    for copy in range(args.copies):
        for i, row in enumerate(rows):
            if row["expected_sender_type"] == "user":
                row = {**row, "sender_name": f"{row['sender_name']}{copy}"}
            if args.join > 1 and row["text"]:
                row = {**row, "text": "，".join(rng.sample(texts, args.join)), "raw_text": None}
            pool.append(labelled_message(row, i))
    messages = [pool[i % len(pool)] for i in range(args.messages)]
    batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]

    classifier = (
        RuleClassifier(config) if args.cache is None else RuleClassifier(config, cache_size=args.cache)
    )
    classifier.classify_batch(messages[: args.batch])  # warm up
    # CPU time of this process, best of --repeat runs (as timeit does): the figure for one core, as
    # little disturbed as possible by other work on the machine. The median shows the spread.
    runs = []
    for _ in range(args.repeat):
        cpu = time.process_time()
        for batch in batches:
            classifier.classify_batch(batch)
        runs.append(time.process_time() - cpu)
    best, median = min(runs), statistics.median(runs)
    chars = statistics.mean(len(m.text) for m in messages)
    print(
        f"{len(messages)} messages ({chars:.0f} characters on average), best of {args.repeat}: {len(messages) / best:,.0f} messages/s "
        f"({1e6 * best / len(messages):.1f} µs/message; median {len(messages) / median:,.0f}/s), "
        f"batch {args.batch}, cache {classifier.cache_size}, Python {sys.version.split()[0]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
