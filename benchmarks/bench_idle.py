"""CPU of the whole stack while no record arrives (not a test).

    .venv/bin/python benchmarks/bench_idle.py [--seconds 30] [--settle 10] [--repo DIR] [--json out.json]

Runs `worktool up` (embedded broker, PostgreSQL and Redis; the dataflow, gateway, console and
dispatcher) on the example business file, waits until its /healthz answers (the dataflow's heartbeat
is there), lets it settle, then reads every process's CPU time (user + system, its children included)
over `--seconds` in which nothing is sent. Prints each process's share of one core, the dataflow's first
(the figure line: `idle dataflow: X.X % of a core`), the dataflow's threads by name (bytewax's worker
is the main thread, librdkafka's are rdk:*), and the load average before and after.

`--repo DIR` runs another checkout's `worktool up` (use that checkout's venv Python, or this one with
the same dependencies): the same measurement of older code, for before/after pairs in one sitting.
`--smoke`: a tiny run (1 s, no settling) that only shows the benchmark still works.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("dataflow", "gateway", "console", "dispatcher", "kafka", "postgres", "redis")


def _tree(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        return [proc, *proc.children(recursive=True)]
    return []


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of every thread of `pid`, with its name (/proc/PID/task/TID/comm:
    librdkafka names its threads rdk:main, rdk:broker<N>, ...; bytewax's worker is the main thread)."""
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        for t in psutil.Process(pid).threads():
            try:
                name = Path(f"/proc/{pid}/task/{t.id}/comm").read_text().strip()
            except OSError:
                continue
            out[t.id] = (name, t.user_time + t.system_time)
    return out


def _by_name(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float
) -> dict[str, float]:
    """% of one core per thread name (threads of one name summed, e.g. several producers' rdk:main)."""
    shares: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        spent = cpu - before.get(tid, (name, 0.0))[1]
        shares[name] = shares.get(name, 0.0) + 100 * spent / wall
    return {name: round(v, 3) for name, v in sorted(shares.items(), key=lambda kv: -kv[1])}


def measure(
    pids: dict[str, int], seconds: float, threads_of: str | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """% of one core per named process tree over `seconds` (the trees are taken once, at the start), and
    per thread name of the process `threads_of` (its main process only)."""
    trees = {name: _tree(pid) for name, pid in pids.items()}
    tpid = pids.get(threads_of) if threads_of else None
    threads_before = _thread_cpu(tpid) if tpid else {}
    before = {name: _cpu(tree) for name, tree in trees.items()}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    cpu = {name: round(100 * (_cpu(tree) - before[name]) / wall, 2) for name, tree in trees.items()}
    threads = _by_name(threads_before, _thread_cpu(tpid), wall) if tpid else {}
    return cpu, threads


def run(repo: Path, root: Path, seconds: float, settle: float, extra_env: dict[str, str]) -> dict[str, Any]:
    sys.path.insert(0, str(repo))
    support = importlib.import_module("tests.support")
    from infra.embedded import free_port

    env = support.up_env(free_port(), root / "data", **extra_env)
    load_before = os.getloadavg()
    with support.running_up(env, root / "up.log", ready_s=180) as stack:
        time.sleep(settle)
        info = stack.info
        pids = {name: p["pid"] for name, p in info["processes"].items() if p.get("pid")}
        pids = {
            name: pids[name]
            for name in sorted(pids, key=lambda n: (n not in ORDER, ORDER.index(n) if n in ORDER else 0, n))
        }
        pids["up (supervisor)"] = stack.up.pid
        cpu, threads = measure(pids, seconds, threads_of="dataflow")
        # the supervisor's own figure without its children (they are measured on their own)
        cpu["up (supervisor)"] = round(
            cpu["up (supervisor)"] - sum(v for k, v in cpu.items() if k != "up (supervisor)"), 2
        )
    return {
        "seconds": seconds,
        "settle_s": settle,
        "cpu_percent": cpu,
        "dataflow_threads_percent": threads,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def report(figures: dict[str, Any]) -> str:
    cpu = figures["cpu_percent"]
    lines = [f"idle dataflow: {cpu.get('dataflow', float('nan')):.1f} % of a core "
             f"(over {figures['seconds']:g} s, after {figures['settle_s']:g} s settling)"]  # fmt: skip
    lines += [f"  {name:<18} {value:6.1f} %" for name, value in cpu.items()]
    lines.append(f"  total {sum(cpu.values()):.1f} % of a core")
    threads = figures.get("dataflow_threads_percent") or {}
    if threads:
        lines.append("dataflow threads (% of a core):")
        lines += [f"  {name:<18} {value:6.2f} %" for name, value in threads.items() if value >= 0.01]
    lines.append(
        "load average before: {} / after: {}".format(
            " ".join(f"{x:.2f}" for x in figures["load_before"]),
            " ".join(f"{x:.2f}" for x in figures["load_after"]),
        )
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the CPU is measured")
    parser.add_argument("--settle", type=float, default=10.0, help="wait this long after /healthz first")
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout whose `worktool up` runs")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the stack (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="keep the stack's data and logs here")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: 1 s, no settling")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.settle = 1.0, 0.0
    extra = dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.logs or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        figures = run(args.repo.resolve(), root, args.seconds, args.settle, extra)
    print(report(figures), flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
