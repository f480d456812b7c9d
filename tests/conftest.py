"""Shared fixtures: real servers for integration tests, and how flows are run.

Layout: tests/<package>/ mirrors the packages (worktool, operators, classifiers, gateway, sinks,
dataflows, infra, commands), tests/e2e/ runs the whole pipeline; the root keeps the architecture checks.
The folders are not Python packages, so a test module's basename must be unique across folders (pytest
refuses a clash: name it after package and module, e.g. sinks/test_sink_kafka.py). Helpers are
imported by full name from every folder: `tests.support`, `tests.dataflows.records`, `fakes.*`
(tests/fakes), and data files sit in tests/data (`tests.support.DATA`). Fixtures for one folder only
go in that folder's conftest.py.

The broker, PostgreSQL and Redis are the embedded ones (started once per session, stopped at the end),
unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL / REDIS_URL name running services. Servers start lazily:
a test run that asks for none of these fixtures starts nothing.

- `kafka_bootstrap`: "host:port" of the broker.
- `database_url`: a fresh, empty database (no migrations) for this session.
- `migrated_database_url`: another fresh database with `infra.migrate.apply_up` applied.
- `new_database`: factory for more fresh databases (`new_database(migrated=True)`).
- `redis_url`: "redis://host:port/db".
- `unique_topics`: creates uuid-suffixed copies of the five topics; returns Settings field overrides.
- `settings_factory`: Settings wired to the servers above with a fresh migrated database per test, a
  per-test data dir and a free HTTP port, plus the overrides you pass (field names, e.g. `shards=4`).
- `entry_point`: runs a bytewax flow in this process, parametrised like bytewax's own tests over
  "run_main", "cluster-1" (cluster_main, 1 worker thread) and "cluster-2" (2 worker threads):
  `entry_point(flow, epoch_interval=None, recovery_config=None)`, blocking until the flow ends. A
  TestingSource is one partition, but keyed steps spread over both workers: compare outputs
  order-insensitively across keys. ABORT/resume works single-worker only: narrow a recovery test with
  `@pytest.mark.parametrize("entry_point", SINGLE_WORKER, indirect=True)` (from tests.support).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from infra.embedded import (
    EmbeddedKafka,
    EmbeddedPostgres,
    EmbeddedRedis,
    create_database,
    drop_database,
    free_port,
)
from infra.kafka_admin import DEFAULT_PARTITIONS, ensure_topics
from tests.support import ENTRY_POINTS, EntryPoint
from worktool.settings import Settings


@pytest.fixture(scope="session")
def _servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def kafka_bootstrap(_servers_dir: Path) -> Iterator[str]:
    if url := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield url
        return
    with EmbeddedKafka(_servers_dir / "kafka") as kafka:
        yield kafka.url


@pytest.fixture(scope="session")
def redis_url(_servers_dir: Path) -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    with EmbeddedRedis(_servers_dir / "redis") as redis:
        yield redis.url


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def _postgres_admin_url(_servers_dir: Path) -> Iterator[str]:
    """URL of a database on the server from which fresh databases are created."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with EmbeddedPostgres(_servers_dir / "postgres", durable=False) as pg:
        yield pg.url_for("postgres")


@pytest.fixture(scope="session")
def new_database(_postgres_admin_url: str) -> Iterator[Callable[..., str]]:
    """Factory: `new_database(migrated=False) -> url` of a new, uniquely named database.
    Databases are dropped at the end of the session."""
    created: list[str] = []

    def make(migrated: bool = False) -> str:
        name = f"wt_test_{uuid.uuid4().hex[:10]}"
        create_database(_postgres_admin_url, name)
        created.append(name)
        url = _with_database(_postgres_admin_url, name)
        if migrated:
            from infra.migrate import apply_up

            apply_up(url)
        return url

    yield make
    for name in created:
        try:
            drop_database(_postgres_admin_url, name)
        except Exception as e:  # the server may be gone already; nothing to clean then
            print(f"could not drop test database {name}: {e}")


@pytest.fixture(scope="session")
def database_url(new_database: Callable[..., str]) -> str:
    return new_database()


@pytest.fixture(scope="session")
def migrated_database_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture
def unique_topics(kafka_bootstrap: str) -> Callable[..., dict[str, Any]]:
    """Factory: `unique_topics(raw_partitions=6, partitions=3)` creates a fresh copy of the six topics
    (names suffixed with a uuid, so tests never see each other's records) and returns the Settings
    field overrides: {"topic_raw": "worktool.raw.<hex>", ..., "raw_partitions": 6}."""

    def make(raw_partitions: int = 6, partitions: int = DEFAULT_PARTITIONS) -> dict[str, Any]:
        suffix = uuid.uuid4().hex[:10]
        defaults = Settings.model_fields
        fields = ["topic_raw", "topic_control", "topic_commands", "topic_monitor", "topic_dlq", "topic_llm"]
        names = {f: f"{defaults[f].default}.{suffix}" for f in fields}
        ensure_topics(
            kafka_bootstrap,
            {name: raw_partitions if f == "topic_raw" else partitions for f, name in names.items()},
        )
        return {**names, "raw_partitions": raw_partitions}

    return make


@pytest.fixture
def settings_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Settings]:
    """Factory: `settings_factory(**overrides) -> Settings`, overrides by field name.

    Unless overridden: kafka_bootstrap_servers and redis_url point at the test servers (started on first
    use); database_url is a fresh migrated database of this test (shared by every call in the test, so
    a gateway's and a dataflow's Settings agree); data_dir is a fresh directory of this test; http_port
    is free; the dispatcher's consumer group is the test's own. Pass `services=False` for Settings without
    any server."""
    # A dispatcher consumer group of its own: a group shared with an earlier test's dispatcher (killed
    # without leaving it) can keep the new one waiting for its partitions past a test's deadline.
    per_test: dict[str, Any] = {
        "data_dir": tmp_path / "worktool-data",
        "http_port": free_port(),
        "dispatcher_group": f"worktool-dispatcher-{uuid.uuid4().hex[:10]}",
    }

    def service(field: str) -> str:
        if field not in per_test:
            if field == "database_url":
                per_test[field] = request.getfixturevalue("new_database")(migrated=True)
            else:
                fixture = {"kafka_bootstrap_servers": "kafka_bootstrap", "redis_url": "redis_url"}[field]
                per_test[field] = request.getfixturevalue(fixture)
        return per_test[field]

    def make(services: bool = True, **overrides: Any) -> Settings:
        unknown = set(overrides) - set(Settings.model_fields)
        if unknown:
            raise TypeError(f"unknown Settings fields: {sorted(unknown)}")
        values: dict[str, Any] = {
            "data_dir": per_test["data_dir"],
            "http_port": per_test["http_port"],
            "dispatcher_group": per_test["dispatcher_group"],
        }
        if services:
            for field in ("kafka_bootstrap_servers", "database_url", "redis_url"):
                if field not in overrides:
                    values[field] = service(field)
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(params=list(ENTRY_POINTS))
def entry_point(request: pytest.FixtureRequest) -> EntryPoint:
    return ENTRY_POINTS[request.param]
