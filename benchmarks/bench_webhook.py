"""Webhook throughput and latency (not a test).

    .venv/bin/python benchmarks/bench_webhook.py [--duration 10] [--runs 3] [--connections 64]
                                                 [--lingers 1,2,5] [--workers 1,2] [--repo DIR] [--smoke]

Starts the embedded broker, then for each configuration a server in a subprocess (uvicorn, uvloop +
httptools, no access log) loaded by `wrk` (or a Python httpx load generator when wrk is missing; it is
much slower than wrk and becomes the bottleneck):

- bare ASGI endpoint: reads the body and answers the success JSON (the ceiling of this machine),
- the gateway (`worktool gateway`) with linger.ms 1, 2, 5 and 1 / 2 workers: every request is
  validated, produced with acks=all and answered after the broker's acknowledgement.

Each request is a message callback from one of 50 groups (about 400 bytes of JSON). Reports req/s, p50
and p99 (median of the runs), and checks that the raw topic holds at least as many records as wrk
counted successful answers (answers still in flight when wrk stops are not counted, their records are).
Each gateway line also gives its share of the bare endpoint's req/s (the issue-14 figure).

`--repo DIR` runs the gateway of another checkout (e.g. `git worktree add /tmp/before 96bb11a`) with
this venv, so old and new code are compared in one sitting. `--smoke` is a tiny run (1 s, 4 connections,
linger 2, 1 worker, no 1-connection run) for the test suite (tests/e2e/test_webhook_benchmark.py); it
exits non-zero on errors or a missing record, as every run does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import orjson
import psutil
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from infra.embedded import EmbeddedKafka, free_port  # noqa: E402
from infra.kafka_admin import ensure_topics, topic_plan  # noqa: E402
from tests.support import env_for  # noqa: E402
from worktool.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GROUPS = 50
BODY = {"spoken": "我的视频号发不了作品，需要扫码认证吗", "rawSpoken": "@运营助理小A 我的视频号发不了作品，需要扫码认证吗",
        "receivedName": "用户甲-138****0000", "groupName": "视频号运营{g}群", "groupRemark": "{g}群",
        "roomType": 1, "atMe": "true", "textType": 1}  # fmt: skip

BARE_APP = textwrap.dedent(
    """
    SUCCESS = b'{"code":0,"message":"success","data":{}}'
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(SUCCESS)).encode())]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": SUCCESS})
    """
)

# wrk script: a message callback per request, rotating over GROUPS groups (keys spread over partitions).
# Requests are formatted once per thread in init(): building them per request would load wrk itself.
WRK_SCRIPT = """
local template = [[%s]]
local requests = {}
local i = 0
init = function(args)
  for g = 1, %d do
    local body = template:gsub("{g}", tostring(g))
    requests[g] = wrk.format("POST", "/worktool/callback/message?robotId=wt_bench",
                             {["Content-Type"] = "application/json"}, body)
  end
end
request = function()
  i = i %% #requests + 1
  return requests[i]
end
"""


def server_cpu_s(pid: int) -> float:
    """CPU seconds of a server process and its children (uvicorn workers) so far. CPU per request is
    the figure that survives a busy machine: req/s depends on how much of the box the server gets."""
    proc = psutil.Process(pid)
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += sum(child.cpu_times()[:2])
    return total


def git_head(repo: Path) -> str:
    run = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return run.stdout.strip() or "not a git checkout"


def wait_for_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_gateway(settings: Settings, linger_ms: int, log: Path, repo: Path = REPO) -> subprocess.Popen:
    # linger.ms is a constant of gateway.producer (not a business setting): override it for the run.
    code = (
        f"import gateway.producer as p; p.LINGER_MS = {linger_ms}; from gateway.server import serve; serve()"
    )
    env = {**env_for(settings), "PYTHONPATH": str(repo)}  # that checkout's code, whatever is installed
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=repo,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)  # fmt: skip


def start_bare(port: int, app_dir: Path, log: Path) -> subprocess.Popen:
    (app_dir / "bare_app.py").write_text(BARE_APP)
    cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--host", "127.0.0.1", "--port", str(port),
           "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=app_dir, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------------------------------
# Load generators


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, duration: int, connections: int, script: Path) -> dict[str, float]:
    cmd = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "ok": requests - (int(bad.group(1)) if bad else 0),
        "errors": (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0),
    }


def run_python(url: str, duration: int, connections: int) -> dict[str, float]:
    bodies = [orjson.dumps(BODY).replace(b"{g}", str(g).encode()) for g in range(1, GROUPS + 1)]
    latencies: list[float] = []
    errors = 0

    async def worker(client: httpx.AsyncClient, deadline: float, offset: int) -> None:
        nonlocal errors
        i = offset
        while time.monotonic() < deadline:
            i += 1
            started = time.perf_counter()
            r = await client.post(url + "/worktool/callback/message?robotId=wt_bench", content=bodies[i % GROUPS],
                                  headers={"content-type": "application/json"})  # fmt: skip
            latencies.append((time.perf_counter() - started) * 1000)
            errors += r.status_code != 200

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            started = time.monotonic()
            await asyncio.gather(*(worker(client, started + duration, n) for n in range(connections)))
            return time.monotonic() - started

    elapsed = asyncio.run(main())
    q = statistics.quantiles(latencies, n=100)
    return {
        "rps": len(latencies) / elapsed,
        "p50": q[49],
        "p99": q[98],
        "requests": len(latencies),
        "ok": len(latencies) - errors,
        "errors": errors,
    }


def count_records(bootstrap: str, topic: str) -> int:
    """Read the whole topic (Tansu's high watermark is not reliable, so read until EOF + silence)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.partition.eof": True})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    count, eof, last = 0, set(), time.monotonic()
    while len(eof) < len(parts) or time.monotonic() - last < 1.0:
        for m in c.consume(5000, 0.2):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            count += 1
            last = time.monotonic()
            eof.discard(m.partition())
    c.close()
    return count


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per configuration (median reported)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--lingers", default="1,2,5", help="linger.ms values to measure (1 worker)")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (at linger.ms 2)")
    parser.add_argument(
        "--python-load", action="store_true", help="use the httpx load generator even if wrk exists"
    )
    parser.add_argument("--repo", type=Path, default=REPO, help="checkout whose gateway is measured")
    parser.add_argument("--smoke", action="store_true", help="a tiny run for the test suite")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.runs, args.connections, args.lingers, args.workers = 1, 1, 4, "2", "1"
    repo = args.repo.resolve()
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    work = Path(tempfile.mkdtemp(prefix="bench_webhook_"))
    script = work / "post.lua"
    template = orjson.dumps(BODY).decode()
    script.write_text(WRK_SCRIPT % (template, GROUPS))

    def load(base: str, connections: int) -> dict[str, float]:
        if use_wrk:
            return run_wrk(base, args.duration, connections, script)
        return run_python(base, args.duration, connections)

    def measure(name: str, base: str, connections: int, runs: int, server: int) -> dict[str, float]:
        if not args.smoke:
            load(base, connections)  # warm-up run (connections, producer id, caches); not counted
        results = []
        for _ in range(runs):
            cpu = server_cpu_s(server)
            result = load(base, connections)
            result["cpu_us"] = (server_cpu_s(server) - cpu) / max(1, result["requests"]) * 1e6
            results.append(result)
        result = {k: statistics.median(r[k] for r in results) for k in ("rps", "p50", "p99", "cpu_us")}
        result["ok"] = sum(r["ok"] for r in results)
        result["errors"] = sum(r["errors"] for r in results)
        print(f"{name:<34} {result['rps']:>9.0f} req/s  p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms"
              f"  errors {result['errors']:.0f}  server CPU {result['cpu_us']:.0f} us/request", flush=True)  # fmt: skip
        return result

    print(
        f"load generator: {f'wrk -t2 -c{args.connections}' if use_wrk else 'python httpx'}; "
        f"{args.runs} x {args.duration} s per configuration (median), on {os.cpu_count()} cores; "
        f"gateway of {repo} ({git_head(repo)})",
        flush=True,
    )
    failed = False
    # Other work on the machine skews every figure: say how busy it was.
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with EmbeddedKafka(work / "kafka") as kafka:
        port = free_port()
        bare = start_bare(port, work, work / "bare.log")
        try:
            wait_for_http(f"http://127.0.0.1:{port}/")
            bare_result = measure(
                "bare ASGI endpoint", f"http://127.0.0.1:{port}", args.connections, args.runs, bare.pid
            )
        finally:
            stop(bare)

        configs = [(int(linger), 1) for linger in args.lingers.split(",")]
        configs += [(2, int(w)) for w in args.workers.split(",") if (2, int(w)) not in configs]
        for linger, workers in configs:
            suffix = f"l{linger}w{workers}"
            settings = Settings(kafka_bootstrap_servers=kafka.url, http_port=free_port(), gateway_workers=workers,
                                data_dir=work / f"data-{suffix}", topic_raw=f"bench.raw.{suffix}",
                                topic_dlq=f"bench.dlq.{suffix}")  # fmt: skip
            ensure_topics(kafka.url, topic_plan(settings))
            gw = start_gateway(settings, linger, work / f"gateway-{suffix}.log", repo)
            try:
                wait_for_http(f"http://127.0.0.1:{settings.http_port}/metrics")
                base = f"http://127.0.0.1:{settings.http_port}"
                result = measure(
                    f"gateway linger.ms={linger} workers={workers}", base, args.connections, args.runs, gw.pid
                )
                print(f"{'':<34} {100 * result['rps'] / bare_result['rps']:.0f} % of the bare endpoint's req/s; "
                      f"by CPU per request (bare / gateway) {100 * bare_result['cpu_us'] / result['cpu_us']:.0f} %",
                      flush=True)  # fmt: skip
                single = {"ok": 0, "errors": 0}
                if not args.smoke:  # One request at a time: the latency WorkTool sees at its usual rate.
                    single = measure("  same, 1 connection", base, 1, 1, gw.pid)
            finally:
                stop(gw)
            records = count_records(kafka.url, settings.topic_raw)
            answered = result["ok"] + single["ok"]  # warm-up runs not counted: their records are extra
            print(f"{'':<34} raw records {records} >= counted successful answers {answered:.0f}: "
                  f"{records >= answered}", flush=True)  # fmt: skip
            failed |= records < answered or result["errors"] + single["errors"] > 0 or answered == 0
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
