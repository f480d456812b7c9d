"""`GET /api/kb/search` (console/knowledge.py) against the embedded PostgreSQL with the shipped set
imported, and against the fake TaxKB when one is configured: passages best first with the query's terms,
every role may read, 422 for a missing or oversized query or limit, 503 without the table."""

from __future__ import annotations

import psycopg
import pytest

from commands.kb import builtin_set
from fakes.taxkb_server import FakeTaxKB, Reply
from infra.knowledge import import_entries
from operators.knowledge import decode, parse_file
from tests.console.console_client import ROLES, TOKEN, bearer, console, login
from worktool.settings import Settings

pytestmark = pytest.mark.integration

PATH = "/api/kb/search"


def import_builtin(database_url: str) -> None:
    name, data = builtin_set()
    with psycopg.connect(database_url, autocommit=True) as conn:
        import_entries(conn, parse_file(name, decode(data)), name)


def test_search_answers_passages_best_first(settings: Settings, users: dict[str, str]) -> None:
    assert settings.database_url
    import_builtin(settings.database_url)
    with console(settings) as client:
        r = client.get(
            PATH, params={"q": "二维码过期了扫不进去", "limit": 3}, headers=login(client, users["staff"])
        )
        none = client.get(PATH, params={"q": "今天天气怎么样"}, headers=bearer(TOKEN))
        stop_words_only = client.get(PATH, params={"q": "怎么办？"}, headers=bearer(TOKEN))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "postgres" and body["query"] == "二维码过期了扫不进去"
    assert {"二维码", "过期"} <= set(body["terms"])
    assert len(body["items"]) == 3
    best = body["items"][0]
    assert best["title"] == "扫码登录时提示二维码已过期怎么办？"
    assert best["id"].startswith("kb_") and best["source"].startswith("kb_channels_shop.jsonl:")
    assert [i["score"] for i in body["items"]] == sorted((i["score"] for i in body["items"]), reverse=True)
    assert none.status_code == 200 and none.json()["items"] == []
    assert stop_words_only.status_code == 200 and stop_words_only.json() == {
        "query": "怎么办？", "backend": "postgres", "terms": [], "items": [],
    }  # fmt: skip


def test_every_role_and_the_service_token_may_search_and_nobody_else(
    settings: Settings, users: dict[str, str]
) -> None:
    with console(settings) as client:
        answers = {
            role: client.get(PATH, params={"q": "退款"}, headers=login(client, users[role])).status_code
            for role in ROLES
        }
        answers["service"] = client.get(PATH, params={"q": "退款"}, headers=bearer(TOKEN)).status_code
        anonymous = client.get(PATH, params={"q": "退款"}).status_code
    assert answers == dict.fromkeys([*ROLES, "service"], 200)
    assert anonymous == 401


@pytest.mark.parametrize(
    "params",
    [{}, {"q": ""}, {"q": "   "}, {"q": "退" * 501}, {"q": "退款", "limit": 0}, {"q": "退款", "limit": 51},
     {"q": "退\x00款"}, {"q": "退款", "limit": "many"}],
)  # fmt: skip
def test_a_bad_query_is_422(settings: Settings, params: dict[str, object]) -> None:
    with console(settings) as client:
        r = client.get(PATH, params=params, headers=bearer(TOKEN))
    assert r.status_code == 422, r.text


def test_without_the_table_it_is_503(settings: Settings) -> None:
    assert settings.database_url
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE kb_passages")
    with console(settings) as client:
        r = client.get(PATH, params={"q": "退款"}, headers=bearer(TOKEN))
    assert r.status_code == 503 and "worktool migrate up" in r.json()["detail"]


def test_with_taxkb_configured_the_remote_answers_and_its_failures_are_empty(settings: Settings) -> None:
    with FakeTaxKB(api_key="console-taxkb-key-0123456789") as remote:
        remote_settings = settings.model_copy(
            update={"taxkb_base_url": remote.base_url, "taxkb_api_key": "console-taxkb-key-0123456789"}
        )
        with console(remote_settings) as client:
            ok = client.get(PATH, params={"q": "增值税起征点"}, headers=bearer(TOKEN))
            cached = client.get(PATH, params={"q": "增值税起征点"}, headers=bearer(TOKEN))
            remote.script(Reply(status=500))
            failed = client.get(PATH, params={"q": "发票怎么开"}, headers=bearer(TOKEN))
        with console(settings.model_copy(update={"kb_backend": "off"})) as client:
            off = client.get(PATH, params={"q": "退款"}, headers=bearer(TOKEN))
    assert ok.status_code == 200, ok.text
    assert ok.json()["backend"] == "taxkb" and ok.json()["items"][0]["id"] == "taxkb:tax-001"
    assert cached.json() == ok.json() and len(remote.requests) == 2  # the cached one was not asked again
    assert failed.status_code == 200 and failed.json()["items"] == []
    assert off.status_code == 200 and off.json()["backend"] == "none"


def test_the_openapi_document_describes_it(settings: Settings) -> None:
    from console.app import create_app

    operation = create_app(settings).openapi()["paths"][PATH]["get"]
    params = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert params["q"]["required"] and not params["limit"].get("required", False)
    assert {"200", "401", "403", "422"} <= set(operation["responses"])
