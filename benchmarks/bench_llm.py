"""LLMClassifier throughput against a local fake OpenAI-compatible server.

    .venv/bin/python benchmarks/bench_llm.py [--messages 400] [--delay 0.05] [--in-flight 8]

Prints the wall time per batch next to the ideal ceil(n / in_flight) * delay, i.e. the classifier's own
overhead (thread hand-off, client, JSON validation) on top of the model's latency.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from classifiers.llm import LLMClassifier  # noqa: E402
from fakes.classify_stubs import StubRules, make_message  # noqa: E402
from fakes.llm_servers import FakeOpenAIServer, slow  # noqa: E402
from worktool.settings import Settings  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=400)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--delay", type=float, default=0.05)
    p.add_argument("--in-flight", type=int, default=8)
    p.add_argument("--smoke", action="store_true", help="a tiny run that only shows the benchmark works")
    args = p.parse_args()
    if args.smoke:
        args.messages, args.batch, args.delay = 20, 10, 0.01

    with FakeOpenAIServer(slow(args.delay)) as server:
        settings = Settings(
            llm_provider="openai",
            llm_base_url=server.base_url,
            llm_model="fake",
            llm_timeout_s=10,
            llm_max_in_flight=args.in_flight,
        )
        with LLMClassifier(StubRules(), settings) as classifier:
            messages = [make_message(i, text=f"第{i}条：结算什么时候到账？") for i in range(args.messages)]
            started = time.perf_counter()
            llm = 0
            for i in range(0, len(messages), args.batch):
                results = classifier.classify_batch(messages[i : i + args.batch])
                llm += sum(r.decided_by == "llm" for r in results)
            elapsed = time.perf_counter() - started
            classifier.drain_call_logs()
    batches = math.ceil(args.messages / args.batch)
    ideal = batches * math.ceil(args.batch / args.in_flight) * args.delay
    print(
        f"{args.messages} messages in {elapsed:.2f} s ({args.messages / elapsed:.0f}/s), "
        f"ideal {ideal:.2f} s, overhead {(elapsed - ideal) / args.messages * 1000:.2f} ms/message, "
        f"decided by llm: {llm}, peak in flight {server.max_in_flight}"
    )


if __name__ == "__main__":
    main()
