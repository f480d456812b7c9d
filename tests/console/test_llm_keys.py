"""LLM provider keys through the console: AES-GCM encrypted at rest with WORKTOOL_SECRETS_KEY, never
returned, logged or audited in clear; refused without a secrets key; unreadable with another one; used by
the dataflow's LLM client, which picks a key set or replaced here up without a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import psycopg
import pytest

from classifiers.llm import LLMClassifier
from console.llm_keys import UndecryptableKey, fingerprint, generate_secrets_key, open_key, parse_secrets_key
from fakes.classify_stubs import StubRules, make_message
from fakes.llm_servers import FakeOpenAIServer
from tests.console.console_client import console, login
from worktool.settings import Settings

pytestmark = pytest.mark.integration

API_KEY = "sk-test-5f1e2d3c4b5a69788796a5b4c3d2e1f0"


def stored(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT provider, ciphertext, key_id, fingerprint FROM llm_provider_keys"
        ).fetchall()


def opened(database_url: str, secrets_key: str, provider: str) -> str | None:
    async def main() -> str | None:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            return await open_key(conn, parse_secrets_key(secrets_key), provider)

    return asyncio.run(main())


def test_a_key_is_stored_encrypted_and_only_its_fingerprint_is_shown(
    settings: Settings, users: dict[str, str], fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_key = generate_secrets_key()
    with (
        caplog.at_level(logging.DEBUG),
        console(settings.model_copy(update={"secrets_key": secrets_key})) as client,
    ):
        admin = login(client, "admin")
        first = client.put("/api/llm/keys/openai", json={"api_key": API_KEY}, headers=admin)
        replaced = client.put("/api/llm/keys/openai", json={"api_key": API_KEY + "-v2"}, headers=admin)
        listed = client.get("/api/llm/keys", headers=admin)
        audit = client.get("/api/audit?action=llm_key.set", headers=admin)
        too_long = client.put("/api/llm/keys/dashscope", json={"api_key": API_KEY * 200}, headers=admin)
        bad_name = client.put("/api/llm/keys/Open%20AI", json={"api_key": API_KEY}, headers=admin)

    assert first.status_code == replaced.status_code == 200
    assert listed.json() == [
        {
            "provider": "openai",
            "fingerprint": fingerprint(API_KEY + "-v2"),
            "updated_by": "admin",
            "updated_at": listed.json()[0]["updated_at"],
        }
    ]
    assert fingerprint(API_KEY).startswith("sha256:") and len(fingerprint(API_KEY)) == 23
    assert too_long.status_code == bad_name.status_code == 422
    for response in (first, replaced, listed, audit, too_long):
        assert API_KEY not in response.text
    assert API_KEY not in caplog.text
    [(provider, ciphertext, key_id, print_)] = stored(fresh_database_url)
    assert provider == "openai" and print_ == fingerprint(API_KEY + "-v2")
    assert API_KEY.encode() not in bytes(ciphertext) and len(bytes(ciphertext)) >= 12 + len(API_KEY) + 16
    assert opened(fresh_database_url, secrets_key, "openai") == API_KEY + "-v2"
    rows = audit.json()["items"]
    assert [(r["before"], r["after"]["fingerprint"]) for r in rows] == [
        ({"fingerprint": fingerprint(API_KEY), "key_id": key_id}, fingerprint(API_KEY + "-v2")),
        (None, fingerprint(API_KEY)),
    ]
    assert API_KEY not in json.dumps(rows)


def test_another_secrets_key_or_another_provider_row_cannot_decrypt(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    secrets_key = generate_secrets_key()
    with console(settings.model_copy(update={"secrets_key": secrets_key})) as client:
        admin = login(client, "admin")
        client.put("/api/llm/keys/openai", json={"api_key": API_KEY}, headers=admin)
        client.put("/api/llm/keys/dashscope", json={"api_key": "sk-dashscope-0123456789"}, headers=admin)

    with pytest.raises(UndecryptableKey):
        opened(fresh_database_url, generate_secrets_key(), "openai")
    with psycopg.connect(fresh_database_url) as conn:  # move openai's ciphertext into dashscope's row
        conn.execute(
            "UPDATE llm_provider_keys SET ciphertext = (SELECT ciphertext FROM llm_provider_keys "
            "WHERE provider = 'openai') WHERE provider = 'dashscope'"
        )
    with pytest.raises(UndecryptableKey):
        opened(fresh_database_url, secrets_key, "dashscope")
    assert opened(fresh_database_url, secrets_key, "openai") == API_KEY
    assert opened(fresh_database_url, secrets_key, "anthropic") is None


@pytest.mark.parametrize("secrets_key", [None, "  ", "not-base64!!", "c2hvcnQ="])
def test_without_a_usable_secrets_key_nothing_is_stored(
    secrets_key: str | None, settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    with console(settings.model_copy(update={"secrets_key": secrets_key})) as client:
        response = client.put(
            "/api/llm/keys/openai", json={"api_key": API_KEY}, headers=login(client, "admin")
        )

    assert response.status_code == 503
    assert "WORKTOOL_SECRETS_KEY" in response.json()["detail"]
    assert secrets_key is None or secrets_key.strip() == "" or secrets_key not in response.text
    assert stored(fresh_database_url) == []
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_a_key_set_through_the_console_reaches_the_llm_client_without_a_restart(
    settings: Settings, users: dict[str, str], fresh_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_key = generate_secrets_key()
    refresh_s = 0.3
    with (
        caplog.at_level(logging.DEBUG),
        FakeOpenAIServer() as server,
        console(settings.model_copy(update={"secrets_key": secrets_key})) as client,
        LLMClassifier(
            StubRules(),
            Settings(
                llm_provider="openai",
                llm_base_url=server.base_url,
                llm_model="fake-model",
                llm_api_key=None,
                llm_key_refresh_s=refresh_s,
                database_url=fresh_database_url,
                secrets_key=secrets_key,  # the dataflow's copy of the console's secrets key
            ),
        ) as classifier,
    ):
        admin = login(client, "admin")

        def decided(i: int) -> str:
            [result] = classifier.classify_batch([make_message(i)])
            return result.decided_by

        assert decided(1) == "rules"  # no key yet: nothing sent
        [record] = classifier.drain_call_logs()
        assert "PUT /api/llm/keys/openai" in record["error_message"]
        assert client.put("/api/llm/keys/openai", json={"api_key": API_KEY}, headers=admin).status_code == 200
        time.sleep(refresh_s + 0.1)
        assert decided(2) == "llm"
        assert (
            client.put("/api/llm/keys/openai", json={"api_key": API_KEY + "-v2"}, headers=admin).status_code
            == 200
        )
        time.sleep(refresh_s + 0.1)
        assert decided(3) == "llm"
        records = classifier.drain_call_logs()

    assert [r.headers["authorization"] for r in server.requests] == [
        f"Bearer {API_KEY}",
        f"Bearer {API_KEY}-v2",
    ]
    assert API_KEY not in caplog.text and API_KEY not in json.dumps(records)
    assert fingerprint(API_KEY) in caplog.text and fingerprint(API_KEY + "-v2") in caplog.text
