"""The reply path with and without an LLM (issue 16): a generated day through the whole dataflow, in
process, as a replay runs it (no wall-clock delays: event time only), with template replies, with LLM
replies from a local fake LLM answering at once, and from one answering after `--latency` seconds.

    .venv/bin/python benchmarks/bench_replies.py [--records 20000] [--latency 0.3] [--in-flight 32]

The fake LLM runs in a process of its own (its CPU is not the flow's). Prints records/s of each mode
(alternated, best of `--rounds`, with the flow process's CPU seconds) and, with the LLM, the
reply-decision latency: from the moment the reply's command reached the reply writer to the moment its
decision was taken (p50/p95/max), and how many replies went out as LLM text. Replayed this way a reply is
due the instant it is planned, so every answer is still out when its command comes: the worst case for
holding. The flow must not stall on the LLM's latency: records/s with the slow LLM should stay near the
instant one's (the difference between those and the templates' is the cost of the calls themselves).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bytewax.testing import TestingSink, run_main  # noqa: E402

from classifiers import load_type_model  # noqa: E402
from classifiers.llm.replies import LLMReplyGenerator  # noqa: E402
from dataflows.flow import FlowOptions, FlowSinks, build_flow  # noqa: E402
from dataflows.sources import ArchiveSource  # noqa: E402
from operators.classify import RuleClassifier  # noqa: E402
from worktool.config import load_config  # noqa: E402
from worktool.settings import Settings  # noqa: E402

CONFIG = REPO / "config" / "business.example.yaml"
ANSWER = "您好，收到您的问题了，售后同事会尽快跟进处理。"


class TimedGenerator:
    """The real generator, timing each reply from its command's first `ready` check to its `result`."""

    def __init__(self, inner: LLMReplyGenerator) -> None:
        self.inner = inner
        self.provider = inner.provider
        self.first_check: dict[int, float] = {}
        self.latencies: list[float] = []

    def start(self, draft: Any) -> Any:
        return self.inner.start(draft)

    def ready(self, handle: Any) -> bool:
        self.first_check.setdefault(id(handle), time.perf_counter())
        return self.inner.ready(handle)

    def result(self, handle: Any) -> Any:
        answer = self.inner.result(handle)
        self.latencies.append(time.perf_counter() - self.first_check.pop(id(handle), time.perf_counter()))
        return answer


def run(archive: Path, generator: Any | None) -> tuple[float, float, list[Any]]:
    config = load_config(CONFIG)
    events: list[Any] = []
    source = ArchiveSource(archive, timedelta(seconds=60), batch_size=1000)
    flow = build_flow(
        source,
        FlowSinks(events=[TestingSink(events)]),
        RuleClassifier(config, model=load_type_model("builtin")),
        FlowOptions(config=config, reply_generator=generator),
    )
    cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run_main(flow)
    wall, cpu1 = time.perf_counter() - wall0, resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return wall, cpu, events


FAKE = """
import sys, time
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from fakes.llm_servers import Behaviour, FakeOpenAIServer
server = FakeOpenAIServer(default=Behaviour(content=sys.argv[2], delay_s=float(sys.argv[3]))).start()
print(server.base_url, flush=True)
time.sleep(3600)
"""


class FakeLLM:
    """The fake LLM in a process of its own."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FAKE, str(REPO), ANSWER, str(latency)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=20_000)
    p.add_argument("--latency", type=float, default=0.3, help="the fake LLM's answer time, seconds")
    p.add_argument("--in-flight", type=int, default=32)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="a tiny run that only shows the benchmark works")
    args = p.parse_args()
    if args.smoke:
        args.records, args.latency, args.rounds = 400, 0.05, 1

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "day.jsonl"
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "make_sample_day.py"), str(archive), "--records", str(args.records)],
            check=True, capture_output=True,
        )  # fmt: skip
        records = sum(1 for _ in archive.open("rb"))
        fakes = {"llm, instant": FakeLLM(0.0), f"llm, {args.latency * 1000:.0f} ms": FakeLLM(args.latency)}
        try:
            best: dict[str, tuple[float, float]] = {}
            results: dict[str, tuple[TimedGenerator, list[Any]]] = {}
            for _ in range(args.rounds):
                for mode in ("templates", *fakes):
                    timed = None
                    if mode in fakes:
                        settings = Settings(llm_provider="openai", llm_base_url=fakes[mode].base_url,
                                            llm_model="fake", llm_api_key="sk-bench", llm_timeout_s=10,
                                            llm_max_in_flight=args.in_flight, database_url=None)  # fmt: skip
                        timed = TimedGenerator(LLMReplyGenerator(settings, load_config(CONFIG)))
                    try:
                        wall, cpu, events = run(archive, timed)
                    finally:
                        if timed is not None:
                            timed.inner.close()
                    if mode not in best or wall < best[mode][0]:
                        best[mode] = (wall, cpu)
                        if timed is not None:
                            results[mode] = (timed, events)
        finally:
            for fake in fakes.values():
                fake.close()
    for mode, (wall, cpu) in best.items():
        print(
            f"{mode:>14}: {records / wall:,.0f} records/s ({records:,} records in {wall:.2f} s, {cpu:.2f} s CPU)"
        )
    for mode, (timed, events) in results.items():
        replies = [
            e.data for e in events if e.event == "command_created" and e.data.cause_event == "reply_scheduled"
        ]
        by_llm = sum(1 for r in replies if r.reply is not None)
        lat = sorted(timed.latencies)
        if lat:
            p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
            print(
                f"{mode:>14}: reply decision after its command p50 {statistics.median(lat) * 1000:.0f} ms, "
                f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms over {len(lat)} LLM calls; "
                f"{by_llm} of {len(replies)} replies written by the LLM"
            )


if __name__ == "__main__":
    main()
