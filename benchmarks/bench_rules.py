"""Classifier throughput on one core: messages/s over a labelled set, repeated, for the rules alone and
the rules with the trained message-type model, timed alternately in the same run.

    .venv/bin/python benchmarks/bench_rules.py [--messages 100000] [--batch 500] [--repeat 5] [--join 1]
        [--set labelled|blind] [--cache N]

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

from classifiers import BUILTIN_MODEL  # noqa: E402
from classifiers.labelled import labelled_message, load_labelled, roster_for  # noqa: E402
from operators.classify import RuleClassifier  # noqa: E402
from operators.type_model import TypeModel  # noqa: E402
from worktool.config import load_config  # noqa: E402

SETS = {
    "labelled": ROOT / "tests" / "data" / "labelled_messages.jsonl",  # ~11 characters a message
    "blind": ROOT / "tests" / "data" / "blind_a_messages.jsonl",  # ~20 characters, independent phrasing
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=500, help="messages per classify_batch call")
    ap.add_argument("--copies", type=int, default=50, help="distinct copies of the set (name churn)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs; the best is reported")
    ap.add_argument("--join", type=int, default=1, help="texts of the set joined into one message")
    ap.add_argument("--set", choices=sorted(SETS), default="labelled", help="the labelled set cycled")
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

    dataset = SETS[args.set]
    rows = load_labelled(dataset)
    config = load_config(roster_for(dataset))
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

    cache = {} if args.cache is None else {"cache_size": args.cache}
    model = TypeModel.load(BUILTIN_MODEL)
    classifiers = {
        "rules": RuleClassifier(config, **cache),
        "rules + model": RuleClassifier(config, model=model, **cache),
    }
    for classifier in classifiers.values():
        classifier.classify_batch(messages[: args.batch])  # warm up
    # CPU time of this process, best of --repeat runs (as timeit does): the figure for one core, as
    # little disturbed as possible by other work on the machine. The two classifiers take turns, so a
    # change in the machine's load hits both. The median shows the spread.
    runs: dict[str, list[float]] = {name: [] for name in classifiers}
    for _ in range(args.repeat):
        for name, classifier in classifiers.items():
            cpu = time.process_time()
            for batch in batches:
                classifier.classify_batch(batch)
            runs[name].append(time.process_time() - cpu)
    chars = statistics.mean(len(m.text) for m in messages)
    print(
        f"{len(messages)} messages of {dataset.name} ({chars:.0f} characters on average), batch {args.batch}, "
        f"cache {classifiers['rules'].cache_size}, Python {sys.version.split()[0]}"
    )
    for name, times in runs.items():
        best, median = min(times), statistics.median(times)
        print(
            f"  {name:14} best of {args.repeat}: {len(messages) / best:,.0f} messages/s "
            f"({1e6 * best / len(messages):.1f} µs/message; median {len(messages) / median:,.0f}/s)"
        )
    ratio = min(runs["rules"]) / min(runs["rules + model"])
    print(f"  rules + model at {ratio:.0%} of the rules' rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
