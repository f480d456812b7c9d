"""The LLM client's key when WORKTOOL_LLM_API_KEY is not set: the one stored (encrypted) through the
console, read by the dataflow's own database login (migration 0013), re-read after the refresh interval
and at once after a 401/403, kept while the database is unreachable; without any key the rules stand and
the record says why. Real PostgreSQL, real openai / dashscope clients against the local fake servers
(which see the Authorization header), and no key ever in the logs."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from classifiers.llm import KeyResolver, LLMClassifier, make_provider
from fakes.classify_stubs import StubRules, make_message
from fakes.llm_servers import FakeDashScopeServer, FakeLLMServer, FakeOpenAIServer, http_error
from infra.db_roles import ensure_login, with_credentials
from infra.llm_keys import fingerprint, generate_secrets_key, key_id, parse_secrets_key, seal
from worktool.settings import Settings

pytestmark = pytest.mark.integration

STORED = "sk-stored-through-the-console-0a1b2c3d4e5f"
REPLACED = "sk-replaced-through-the-console-9f8e7d6c5b4a"
ENV_KEY = "sk-from-the-environment-1234567890abcdef"
KEYS = (STORED, REPLACED, ENV_KEY)
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05, "batch_deadline_s": 3.0}
REFRESH_S = 0.4
SERVERS = {"openai": FakeOpenAIServer, "dashscope": FakeDashScopeServer}


@pytest.fixture(params=sorted(SERVERS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def server(provider: str) -> Iterator[FakeLLMServer]:
    with SERVERS[provider]() as s:
        yield s


@pytest.fixture
def owner_url(new_database: Callable[..., str]) -> str:
    return new_database(migrated=True)


@pytest.fixture
def dataflow_url(owner_url: str) -> str:
    """A login of the dataflow's role (worktool_dataflow), as `worktool up` and compose give it."""
    user, password = f"t_{uuid.uuid4().hex[:8]}_dataflow", uuid.uuid4().hex
    ensure_login(owner_url, "dataflow", user, password)
    return with_credentials(owner_url, user, password)


@pytest.fixture
def secrets_key() -> str:
    return generate_secrets_key()


@pytest.fixture(autouse=True)
def no_key_in_the_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for key in KEYS:
        assert key not in caplog.text


def store(owner_url: str, secrets_key: str, provider: str, api_key: str) -> None:
    """What PUT /api/llm/keys/{provider} writes (console/llm_keys.py), through the shared crypto module."""
    secret = parse_secrets_key(secrets_key)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO llm_provider_keys (provider, ciphertext, key_id, fingerprint, updated_by)
               VALUES (%s, %s, %s, %s, 'test')
               ON CONFLICT (provider) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,
                   key_id = EXCLUDED.key_id, fingerprint = EXCLUDED.fingerprint""",
            (provider, seal(secret, provider, api_key), key_id(secret), fingerprint(api_key)),
        )


def delete(owner_url: str, provider: str) -> None:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("DELETE FROM llm_provider_keys WHERE provider = %s", (provider,))


@pytest.fixture
def make_classifier(provider: str, server: FakeLLMServer, dataflow_url: str, secrets_key: str):
    made: list[LLMClassifier] = []

    def make(*, db_timeout_s: float = 3.0, **overrides: Any) -> LLMClassifier:
        values: dict[str, Any] = dict(
            llm_provider=provider,
            llm_base_url=server.base_url,
            llm_model="fake-model",
            llm_api_key=None,
            llm_timeout_s=2.0,
            llm_max_in_flight=4,
            llm_key_refresh_s=REFRESH_S,
            database_url=dataflow_url,
            secrets_key=secrets_key,
        )
        settings = Settings(**{**values, **overrides})
        keys = KeyResolver(settings, db_timeout_s=db_timeout_s)
        c = LLMClassifier(StubRules(), settings, provider=make_provider(settings, keys), **FAST)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def classify(classifier: LLMClassifier, i: int = 1) -> tuple[str, dict[str, Any]]:
    """decided_by of one message, and its AI I/O record (never carrying a key)."""
    [result] = classifier.classify_batch([make_message(i)])
    [record] = classifier.drain_call_logs()
    for key in KEYS:
        assert key not in json.dumps(record, ensure_ascii=False)
    return result.decided_by, record


def keys_seen(server: FakeLLMServer) -> list[str]:
    return [r.headers.get("authorization", "").removeprefix("Bearer ") for r in server.requests]


# -- precedence --------------------------------------------------------------------------------------


def test_the_environment_key_wins_over_the_stored_one(
    provider: str, server: FakeLLMServer, make_classifier, owner_url: str, secrets_key: str
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier(llm_api_key=ENV_KEY)
    assert classify(c)[0] == "llm"
    assert keys_seen(server) == [ENV_KEY]


def test_without_an_environment_key_the_stored_key_is_used(
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    secrets_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    store(owner_url, secrets_key, "other-provider", REPLACED)  # not the configured provider's
    c = make_classifier()
    assert [classify(c, i)[0] for i in range(3)] == ["llm"] * 3
    assert keys_seen(server) == [STORED] * 3
    assert fingerprint(STORED) in caplog.text  # which key is in use: by its fingerprint


def test_without_a_database_nothing_is_read_and_a_local_endpoint_needs_no_key(
    server: FakeLLMServer, make_classifier
) -> None:
    c = make_classifier(database_url=None, secrets_key=None)
    assert classify(c)[0] == "llm"
    assert keys_seen(server) == ["not-needed"]  # as before: the placeholder a key-less server ignores


# -- changes without a restart ---------------------------------------------------------------------


def test_a_changed_key_applies_after_the_refresh_interval(
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    secrets_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier()
    assert classify(c, 1)[0] == "llm"
    store(owner_url, secrets_key, provider, REPLACED)
    assert classify(c, 2)[0] == "llm"  # within the interval: the cached key, no database read per call
    time.sleep(REFRESH_S + 0.1)
    assert classify(c, 3)[0] == "llm"
    assert keys_seen(server) == [STORED, STORED, REPLACED]
    assert f"{fingerprint(STORED)} -> {fingerprint(REPLACED)}" in caplog.text


def test_a_refused_key_is_re_read_at_once_and_the_request_sent_again(
    provider: str, server: FakeLLMServer, make_classifier, owner_url: str, secrets_key: str
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier(llm_key_refresh_s=3600)  # only the 401 can make it read again
    assert classify(c, 1)[0] == "llm"
    store(owner_url, secrets_key, provider, REPLACED)  # the old key was revoked at the provider
    server.script(http_error(401, message="invalid api key"))
    decided, record = classify(c, 2)
    assert decided == "llm" and record["status"] == "ok"
    assert keys_seen(server) == [STORED, STORED, REPLACED]
    assert c.breaker.state == "closed"


def test_a_refused_key_that_did_not_change_is_an_error_as_before(
    provider: str, server: FakeLLMServer, make_classifier, owner_url: str, secrets_key: str
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier(llm_key_refresh_s=3600)
    server.default = http_error(403, message="forbidden")
    decided, record = classify(c)
    assert decided == "rules" and record["status"] == "error" and "403" in record["error_message"]
    assert keys_seen(server) == [STORED]  # 4xx: not retried, nothing new to try


def test_a_deleted_key_stops_the_calls_and_says_why(
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    secrets_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier()
    assert classify(c, 1)[0] == "llm"
    delete(owner_url, provider)
    time.sleep(REFRESH_S + 0.1)
    decided, record = classify(c, 2)
    assert decided == "rules" and record["status"] == "error"
    assert "was deleted" in record["error_message"] and fingerprint(STORED) in record["error_message"]
    assert keys_seen(server) == [STORED]  # nothing sent without a key
    assert c.breaker.state == "closed"  # no key says nothing about the endpoint
    assert sum("LLM calls to" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1
    store(owner_url, secrets_key, provider, REPLACED)  # set again: calls resume
    time.sleep(REFRESH_S + 0.1)
    assert classify(c, 3)[0] == "llm"
    assert keys_seen(server) == [STORED, REPLACED]


# -- no key ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({}, "is stored through the console (PUT /api/llm/keys/"),
        ({"secrets_key": None}, "WORKTOOL_SECRETS_KEY is not set"),
        ({"secrets_key": generate_secrets_key()}, "does not decrypt with this secrets key"),
    ],
    ids=["none-stored", "no-secrets-key", "another-secrets-key"],
)
def test_without_a_usable_key_the_rules_stand_and_the_reason_is_given(
    overrides: dict[str, Any],
    why: str,
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    secrets_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if overrides:
        store(owner_url, secrets_key, provider, STORED)  # stored, but not openable by this process
    c = make_classifier(**overrides)
    outcomes = [classify(c, i) for i in range(3)]
    assert [decided for decided, _ in outcomes] == ["rules"] * 3
    for _, record in outcomes:
        assert record["status"] == "error" and why in record["error_message"], record["error_message"]
    assert server.requests == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum(why in w for w in warnings) == 1, warnings  # said once, not per call


# -- the database unreachable ----------------------------------------------------------------------


class TcpProxy:
    """127.0.0.1:<port> forwarding to `target`; `mode` "forward", "refuse" (accept and close at once) or
    "hang" (accept, never answer)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
            elif self.mode == "hang":
                self._held.append(client)
            else:
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def url(self, database_url: str) -> str:
        parts = urlsplit(database_url)
        credentials = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{self.port}"))

    def close(self) -> None:
        self._stopped = True
        self._listener.close()
        for s in self._held:
            s.close()


@pytest.fixture
def proxy(dataflow_url: str) -> Iterator[TcpProxy]:
    parts = urlsplit(dataflow_url)
    p = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.close()


@pytest.mark.parametrize("outage", ["refuse", "hang"])
def test_while_the_database_is_unreachable_the_last_key_is_kept(
    outage: str,
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    dataflow_url: str,
    secrets_key: str,
    proxy: TcpProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    c = make_classifier(database_url=proxy.url(dataflow_url), db_timeout_s=0.5)
    assert classify(c, 1)[0] == "llm"
    proxy.mode = outage
    for i in range(2, 5):  # several refresh intervals of outage
        time.sleep(REFRESH_S + 0.1)
        started = time.monotonic()
        assert classify(c, i)[0] == "llm"
        assert time.monotonic() - started < 1.5  # a hung database costs a call at most a short wait
    assert keys_seen(server) == [STORED] * 4
    warnings = [r.getMessage() for r in caplog.records if "cannot read the stored" in r.getMessage()]
    assert len(warnings) == 1 and fingerprint(STORED) in warnings[0]  # once per outage

    store(owner_url, secrets_key, provider, REPLACED)
    proxy.mode = "forward"  # back: the next read finds the new key
    deadline = time.monotonic() + 5
    i = 10
    while keys_seen(server)[-1] != REPLACED and time.monotonic() < deadline:
        time.sleep(REFRESH_S / 2)
        assert classify(c, i)[0] == "llm"
        i += 1
    assert keys_seen(server)[-1] == REPLACED
    assert "can be read again" in caplog.text


def test_an_unreachable_database_at_start_gives_no_key_then_the_key_once_it_is_back(
    provider: str,
    server: FakeLLMServer,
    make_classifier,
    owner_url: str,
    dataflow_url: str,
    secrets_key: str,
    proxy: TcpProxy,
) -> None:
    store(owner_url, secrets_key, provider, STORED)
    proxy.mode = "refuse"
    c = make_classifier(database_url=proxy.url(dataflow_url), db_timeout_s=0.5)
    decided, record = classify(c, 1)
    assert decided == "rules" and "cannot be read" in record["error_message"]
    proxy.mode = "forward"
    time.sleep(REFRESH_S + 0.1)
    assert classify(c, 2)[0] == "llm"
    assert keys_seen(server) == [STORED]
