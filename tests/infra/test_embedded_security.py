"""Embedded servers: password authentication, a minimal environment, and restarts after kill -9 on the
same port with the same data."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import psutil
import psycopg
import pytest

from infra.embedded import (
    PG_HBA,
    EmbeddedKafka,
    EmbeddedPostgres,
    redact_url,
    server_env,
)

SECRET = "llm-key-that-must-stay-home"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _refused(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


def _kill_and_wait(pid: int) -> None:
    proc = psutil.Process(pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.mark.integration
def test_postgres_requires_its_generated_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKTOOL_LLM_API_KEY", SECRET)
    with EmbeddedPostgres(tmp_path / "pg", durable=False) as pg:
        password = pg.password
        assert password and len(password) >= 24
        assert stat.S_IMODE(pg.password_file.stat().st_mode) == 0o600
        assert pg.url == f"postgresql://postgres:{password}@127.0.0.1:{pg.port}/worktool"
        assert password not in pg.display_url and "***" in pg.display_url
        assert (pg.data_dir / "pg_hba.conf").read_text() == PG_HBA

        assert _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/worktool")
        assert _refused(f"postgresql://postgres:wrong@127.0.0.1:{pg.port}/worktool")
        with psycopg.connect(pg.url, autocommit=True) as conn:
            # What the operator did: a superuser reading the server's environment. Nothing secret there.
            conn.execute("CREATE TEMP TABLE env (line text)")
            conn.execute("COPY env FROM PROGRAM 'printenv'")
            names = {line.split("=", 1)[0] for (line,) in conn.execute("SELECT line FROM env")}
        assert "WORKTOOL_LLM_API_KEY" not in names
        assert SECRET not in "".join(_environ(pg.pid).values())
        assert set(_environ(pg.pid)) <= {"PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR"}


@pytest.mark.integration
def test_a_trust_data_dir_of_an_older_version_is_switched_to_a_password_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    data = tmp_path / "pg"

    class OlderVersion(EmbeddedPostgres):
        """What versions before passwords did: initdb --auth=trust, no password file."""

        def _prepare(self) -> None:
            if self.system_user:
                self._prepare_system_user()
            if not (self.data_dir / "PG_VERSION").exists():
                subprocess.run(
                    [self._bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                     "--encoding=utf8", "--no-instructions"],
                    check=True, stdout=subprocess.DEVNULL, **self._popen_kwargs(),
                )  # fmt: skip

    with OlderVersion(data, durable=False) as old:
        assert old.password is None
        with psycopg.connect(old.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (x text)")
            conn.execute("INSERT INTO kept VALUES ('数据')")

    with EmbeddedPostgres(data, durable=False) as pg:
        assert pg.password is not None
        assert "trust" not in "".join(
            line for line in (data / "pg_hba.conf").read_text().splitlines() if not line.startswith("#")
        )
        assert _refused(f"postgresql://postgres@127.0.0.1:{pg.port}/worktool")
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == ("数据",)

    # The next start finds everything in place and changes nothing.
    password = pg.password
    with EmbeddedPostgres(data, durable=False) as again, psycopg.connect(again.url) as conn:
        assert again.password == password
        assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)


@pytest.mark.integration
def test_postgres_killed_restarts_on_its_port_with_its_data(tmp_path: Path) -> None:
    # Durable as under `worktool up`: without fsync and synchronous commits a kill -9 may lose commits.
    with EmbeddedPostgres(tmp_path / "pg") as pg:
        url, port = pg.url, pg.port
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t VALUES (1)")
        _kill_and_wait(pg.pid)
        assert not pg.running
        pg.restart()
        assert pg.running and pg.port == port and pg.url == url
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM t").fetchone() == (1,)


@pytest.mark.integration
def test_broker_gets_a_minimal_environment_and_restarts_on_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKTOOL_LLM_API_KEY", SECRET)
    # Tansu reads its settings from the environment too: a stray variable must not reconfigure it.
    monkeypatch.setenv("STORAGE_ENGINE", "s3://elsewhere/")
    with EmbeddedKafka(tmp_path / "kafka") as kafka:
        env = _environ(kafka.pid)
        assert "WORKTOOL_LLM_API_KEY" not in env and "STORAGE_ENGINE" not in env
        url = kafka.url
        _kill_and_wait(kafka.pid)
        kafka.restart()
        assert kafka.url == url and kafka.running


def test_server_env_and_redaction() -> None:
    env = server_env()
    assert env["LC_ALL"] == "C.UTF-8" and "PATH" in env
    assert not any(name.startswith("WORKTOOL_") for name in env)
    assert redact_url("postgresql://postgres:pw@127.0.0.1:5/db") == "postgresql://postgres:***@127.0.0.1:5/db"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert os.environ.get("LC_ALL") != "x"  # server_env never changes this process's environment
