"""The dataflow as a bytewax cluster: N processes x W worker threads (docs/operations.md, "A dataflow cluster").

Every process runs `python -m bytewax.run ... -w W -i <process id> -a "host:port;host:port;..."` (the same
address list everywhere). Three ways to run one:

* `worktool dataflow` alone: one process, `--workers` threads (as before).
* `worktool dataflow --processes N`: a local launcher (`run_local_cluster`) starts the N processes on this
  machine on free loopback ports and watches them. bytewax peers cannot go on without each other, so when
  one process dies, the launcher kills the others and exits with its code; its supervisor (`worktool up`,
  systemd, ...) starts the whole cluster again, which resumes from its last snapshot.
* `worktool dataflow --process-id I --addresses "a:p;b:p"`: one member of a cluster whose processes are
  started elsewhere (docker-compose replicas, one per host).

Per process: its metrics port (a local cluster: the base port + process id), its watchdog directory
(dataflows/watchdog.py), its heartbeat key in Redis (sinks/heartbeat.py) and, in a local cluster, its log
file. The recovery directory is shared by all processes of the cluster.

Keys and workers: bytewax sends every keyed item to worker `siphash13(key) % total workers` (Rust's default
hasher, `worker_of` below, checked against bytewax by a test). The stateful steps are keyed by shard, and a
conversation always maps to the same shard (operators/shard.py), so a conversation stays on one worker;
ticks are sent to every shard, so every worker that holds a shard sees the clock move.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CLUSTER_PORT = 2101  # the port of a process in a cluster whose addresses name no port
STOP_GRACE_S = 5.0  # after an interrupt, how long the launcher waits for its processes before SIGKILL


class ClusterConfigError(ValueError):
    """The cluster options do not describe one cluster."""


# ------------------------------------------------------------------------------------------- routing

_M = (1 << 64) - 1


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def _siphash13(data: bytes) -> int:
    """SipHash-1-3 with zero keys: Rust's `DefaultHasher::new()`."""
    v0, v1 = 0x736F6D6570736575, 0x646F72616E646F6D
    v2, v3 = 0x6C7967656E657261, 0x7465646279746573

    def sip_round() -> None:
        nonlocal v0, v1, v2, v3
        v0 = (v0 + v1) & _M
        v1 = _rotl(v1, 13) ^ v0
        v0 = _rotl(v0, 32)
        v2 = (v2 + v3) & _M
        v3 = _rotl(v3, 16) ^ v2
        v0 = (v0 + v3) & _M
        v3 = _rotl(v3, 21) ^ v0
        v2 = (v2 + v1) & _M
        v1 = _rotl(v1, 17) ^ v2
        v2 = _rotl(v2, 32)

    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i : i + 8], "little")
        v3 ^= m
        sip_round()
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    sip_round()
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        sip_round()
    return v0 ^ v1 ^ v2 ^ v3


def worker_of(key: str, worker_count: int) -> int:
    """The worker (0 .. worker_count-1, over the whole cluster) that bytewax gives a state key to."""
    return _siphash13(key.encode() + b"\xff") % worker_count  # Rust hashes a str as its bytes + 0xff


def shard_keys(shards: int) -> list[str]:
    """The state keys of the flow's stateful steps (dataflows/flow.py `_keyed`)."""
    return [str(i) for i in range(shards)]


# ------------------------------------------------------------------------------------------- shape


@dataclass(frozen=True)
class ClusterShape:
    workers: int = 1  # worker threads per process
    processes: int = 1
    process_id: int | None = None  # this process, when it is one member of a cluster started elsewhere
    addresses: tuple[str, ...] = ()  # every process's host:port, in process-id order

    @property
    def total_workers(self) -> int:
        return self.workers * self.processes

    @property
    def is_local_launcher(self) -> bool:
        return self.processes > 1 and self.process_id is None

    def shard_owners(self, shards: int) -> dict[int, list[str]]:
        """Worker -> the shard keys it holds (every worker, also those that hold none)."""
        owners: dict[int, list[str]] = {w: [] for w in range(self.total_workers)}
        for key in shard_keys(shards):
            owners[worker_of(key, self.total_workers)].append(key)
        return owners

    def beating_processes(self, shards: int) -> list[int]:
        """The processes that hold at least one shard: ticks pass through them, so they write a heartbeat."""
        return sorted({w // self.workers for w, keys in self.shard_owners(shards).items() if keys})

    def bytewax_args(self) -> list[str]:
        args = ["-w", str(self.workers)]
        if self.processes > 1:
            args += ["-i", str(self.process_id or 0), "-a", ";".join(self.addresses)]
        return args

    def env(self) -> dict[str, str]:
        """The settings that tell a bytewax process its place in the cluster (worktool/settings.py)."""
        env = {
            "WORKTOOL_DATAFLOW_WORKERS": str(self.workers),
            "WORKTOOL_DATAFLOW_PROCESSES": str(self.processes),
        }
        env["WORKTOOL_DATAFLOW_PROCESS_ID"] = str(self.process_id or 0)
        if self.addresses:
            env["WORKTOOL_DATAFLOW_ADDRESSES"] = ";".join(self.addresses)
        return env


def _int(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(str(value))
    except ValueError:
        raise ClusterConfigError(f"{name} must be a number, not {value!r}") from None


def parse_addresses(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    out = []
    for item in value.replace(",", ";").split(";"):
        item = item.strip()
        if item:
            out.append(item if ":" in item else f"{item}:{DEFAULT_CLUSTER_PORT}")
    return tuple(out)


def resolve_shape(
    settings: object,
    *,
    workers: int | None = None,
    processes: int | None = None,
    process_id: int | None = None,
    addresses: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterShape:
    """The cluster from the command-line options, else the WORKTOOL_DATAFLOW_* settings, else bytewax's own
    BYTEWAX_WORKERS_PER_PROCESS / BYTEWAX_PROCESS_ID / BYTEWAX_ADDRESSES."""
    env = os.environ if environ is None else environ

    def pick(option: object, setting: str, bytewax_env: str | None) -> object:
        if option is not None:
            return option
        value = getattr(settings, setting, None)
        if value is not None:
            return value
        return env.get(bytewax_env) if bytewax_env else None

    return _checked(
        _int(pick(workers, "dataflow_workers", "BYTEWAX_WORKERS_PER_PROCESS"), "--workers") or 1,
        _int(pick(processes, "dataflow_processes", None), "--processes"),
        _int(pick(process_id, "dataflow_process_id", "BYTEWAX_PROCESS_ID"), "--process-id"),
        parse_addresses(str(pick(addresses, "dataflow_addresses", "BYTEWAX_ADDRESSES") or "")),
    )


def _checked(w: int, n: int | None, pid: int | None, addrs: tuple[str, ...]) -> ClusterShape:
    if w < 1:
        raise ClusterConfigError("--workers must be at least 1")
    if addrs:
        if n is not None and n != len(addrs):
            raise ClusterConfigError(f"--processes {n} but {len(addrs)} addresses ({';'.join(addrs)})")
        n = len(addrs)
        if pid is None:
            raise ClusterConfigError("--addresses names a cluster: give this process's --process-id too")
    n = 1 if n is None else n
    if n < 1:
        raise ClusterConfigError("--processes must be at least 1")
    if pid is not None:
        if not 0 <= pid < n:
            raise ClusterConfigError(f"--process-id {pid} is not one of the {n} processes (0..{n - 1})")
        if n > 1 and not addrs:
            raise ClusterConfigError(
                "--process-id of a cluster needs --addresses (every process's host:port)"
            )
        if n == 1:
            pid = None  # a cluster of one: a plain process
    return ClusterShape(workers=w, processes=n, process_id=pid, addresses=addrs)


# ------------------------------------------------------------------------------------------- launcher


def free_ports(n: int) -> list[int]:
    from infra.embedded import free_port

    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def consecutive_free_ports(n: int, host: str = "127.0.0.1") -> int:
    """A base port such that base .. base+n-1 are free now (the metrics ports of a local cluster)."""
    from infra.embedded import free_port, port_open

    for _ in range(100):
        base = free_port()
        if base + n <= 65535 and not any(port_open(host, base + i) for i in range(1, n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def _kill_with_parent() -> None:
    """In the child: SIGKILL when the launcher dies, however it dies (no process of a cluster may outlive it
    and keep writing to the shared recovery directory)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class _Interrupted(Exception):  # noqa: N818 (a request, not an error)
    pass


class _LocalCluster:
    def __init__(
        self, shape: ClusterShape, command: list[str], log_dir: Path | None, metrics_port: int | None
    ):
        self.shape, self.command, self.log_dir, self.metrics_port = shape, command, log_dir, metrics_port
        self.addresses = tuple(f"127.0.0.1:{p}" for p in free_ports(shape.processes))
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for i in range(self.shape.processes):
            member = replace(self.shape, process_id=i, addresses=self.addresses)
            env = {**os.environ, **member.env()}
            if self.metrics_port is not None:
                env["WORKTOOL_DATAFLOW_METRICS_PORT"] = str(self.metrics_port + i)
            out = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(
                    self.log_dir / f"dataflow-{i}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
                )
                out = os.fdopen(fd, "ab")
            try:
                self.children.append(
                    subprocess.Popen(
                        [*self.command, *member.bytewax_args()],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT if out is not None else None,
                        preexec_fn=_kill_with_parent,  # noqa: PLW1509 (no threads yet in this process)
                    )
                )
            finally:
                if out is not None:
                    out.close()
        log.info(
            "dataflow cluster: %d processes x %d workers on %s (pids %s)%s",
            self.shape.processes, self.shape.workers, ";".join(self.addresses),
            ", ".join(str(c.pid) for c in self.children),
            f"; logs {self.log_dir}/dataflow-<id>.log" if self.log_dir else "",
        )  # fmt: skip

    def wait_for_an_end(self) -> int:
        """Blocks until a process ends; its exit code (1 for 0 or a signal)."""
        while True:
            for i, child in enumerate(self.children):
                rc = child.poll()
                if rc is not None:
                    how = f"exited with code {rc}" if rc >= 0 else f"was killed by signal {-rc}"
                    log.error(
                        "dataflow process %d (pid %d) %s: stopping the whole cluster (bytewax peers cannot go "
                        "on alone); started again, it resumes from its last snapshot",
                        i, child.pid, how,
                    )  # fmt: skip
                    return rc if rc > 0 else 1
            time.sleep(0.1)

    def stop(self, polite: bool) -> None:
        """polite: SIGINT (bytewax stops between batches), SIGKILL after STOP_GRACE_S; else SIGKILL now."""
        for child in self.children:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGINT if polite else signal.SIGKILL)
        deadline = time.monotonic() + (STOP_GRACE_S if polite else 2.0)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                child.wait()


def run_local_cluster(
    shape: ClusterShape,
    command: list[str],
    *,
    log_dir: Path | None = None,
    metrics_port: int | None = None,
) -> int:
    """Start the processes of `shape` on this machine (`command` + each one's -w/-i/-a; process i serves its
    metrics on `metrics_port + i`), watch them, and stop them all when one ends or on SIGINT/SIGTERM.
    Returns 0 after an interrupt, else the exit code of the process that ended first (1 if that was 0 or a
    signal)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise _Interrupted(signal.Signals(signum).name)

    cluster = _LocalCluster(shape, command, log_dir, metrics_port)
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            cluster.start()
            code = cluster.wait_for_an_end()
        except _Interrupted as e:
            log.info("%s received: stopping the dataflow cluster", e)
            cluster.stop(polite=True)
            return 0
        cluster.stop(polite=False)  # a killed peer: the others cannot finish their epoch anyway
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
