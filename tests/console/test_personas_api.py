"""Reply personas through the console (issue 16 part 1): the seven presets as migrated, one with its
versions, a PUT writing a new version (audited), a new persona, refusals; admin only (the permission
matrix of test_accounts.py covers every role); the live dataflow's view of the console's versions."""

from __future__ import annotations

import pytest

from infra.migrate import apply_up, latest_console_personas
from tests.console.console_client import console, login
from worktool.settings import Settings

pytestmark = pytest.mark.integration


def test_list_read_and_version_a_persona(
    settings: Settings, users: dict[str, str], fresh_database_url: str
) -> None:
    with console(settings) as client:
        admin = login(client, "admin")
        listed = client.get("/api/personas", headers=admin)
        before = client.get("/api/personas/service", headers=admin)
        put = client.put(
            "/api/personas/service",
            json={"tone": "耐心、专业、更简短", "max_reply_chars": 60, "emoji": "none", "note": "回复太长"},
            headers=admin,
        )
        after = client.get("/api/personas/service", headers=admin)
        audit = client.get("/api/audit?action=persona.update", headers=admin)
        supervisor = client.get("/api/personas", headers=login(client, "supervisor"))
        missing = client.get("/api/personas/nobody", headers=admin)
        empty = client.put("/api/personas/service", json={"note": "nothing"}, headers=admin)
        bad = client.put("/api/personas/service", json={"max_reply_chars": 5}, headers=admin)
        half_new = client.put("/api/personas/vip", json={"name": "VIP"}, headers=admin)
        new = client.put(
            "/api/personas/vip",
            json={"name": "大客户机器人", "system_prompt": "你是大客户专属助理。", "tone": "周到"},
            headers=admin,
        )

    assert listed.status_code == 200
    assert {p["code"] for p in listed.json()} == {
        "community", "service", "conversion", "tech_support", "product_info", "customer_relation", "assistant"
    }  # fmt: skip
    assert all(
        p["current_version"] == 1 and p["source"] == "package" and p["is_preset"] for p in listed.json()
    )
    assert before.json()["emoji"] == "light" and len(before.json()["versions"]) == 1
    assert put.status_code == 200
    body = after.json()
    assert (body["current_version"], body["tone"], body["max_reply_chars"], body["emoji"]) == (
        2, "耐心、专业、更简短", 60, "none"
    )  # fmt: skip
    assert body["system_prompt"] == before.json()["system_prompt"]  # unchanged fields carried over
    assert [(v["version"], v["source"], v["created_by"]) for v in body["versions"]] == [
        (2, "console", "admin"), (1, "package", "package")
    ]  # fmt: skip
    assert body["versions"][0]["note"] == "回复太长"
    [entry] = audit.json()["items"]
    assert (entry["target_type"], entry["target_id"], entry["actor"]) == ("persona", "service", "admin")
    assert entry["before"]["current_version"] == 1 and entry["after"]["version"] == 2
    assert supervisor.status_code == 403
    assert missing.status_code == 404
    assert empty.status_code == bad.status_code == half_new.status_code == 422
    assert new.status_code == 200 and new.json()["is_preset"] is False and new.json()["current_version"] == 1

    # What the live dataflow applies when it starts: the console's current versions only.
    versions = latest_console_personas(fresh_database_url)
    assert set(versions) == {"service", "vip"}
    assert versions["service"].max_reply_chars == 60 and versions["service"].emoji == "none"
    # Migrating again keeps the console's version current (the package's is unchanged).
    apply_up(fresh_database_url)
    assert latest_console_personas(fresh_database_url)["service"].max_reply_chars == 60
