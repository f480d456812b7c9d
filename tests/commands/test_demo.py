"""The demo's sample day (a valid, sorted archive that matches the example configuration) and its
player (each webhook to its endpoint). No servers needed."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support import REPO


def test_sample_day_is_a_valid_sorted_archive() -> None:
    from commands.demo import SAMPLE_DAY
    from worktool.config import load_config
    from worktool.models import MessageCallback, RawRecord, ResultCallback

    lines = SAMPLE_DAY.read_text(encoding="utf-8").splitlines()
    records = [RawRecord.model_validate_json(line) for line in lines]
    assert 150 <= len(records) <= 300
    assert [r.received_at for r in records] == sorted(r.received_at for r in records)
    assert all(line.split('"received_at":"')[1][:24].endswith("Z") for line in lines)

    bodies = [MessageCallback.model_validate(r.body) for r in records if r.kind == "message"]
    for r in records:
        if r.kind in ("result", "qrcode", "accepted"):
            ResultCallback.model_validate(r.body)
    kinds = {r.kind for r in records}
    assert kinds == {"message", "result", "qrcode", "online", "offline", "accepted"}
    assert {b.textType for b in bodies} >= {1, 2, 3}
    assert {b.roomType for b in bodies} >= {1, 2, 3}
    assert any(r.body.get("errorCode") == 201102 for r in records if r.kind == "result")

    # The same message reported by two robots, 0.2-2 s apart.
    by_content: dict[tuple, list[RawRecord]] = {}
    for r in records:
        if r.kind == "message":
            key = (r.body["receivedName"], r.body["groupName"], r.body["rawSpoken"], r.body["textType"])
            by_content.setdefault(key, []).append(r)
    pairs = [rs for rs in by_content.values() if len({r.robot_id for r in rs}) == 2]
    assert len(pairs) >= 20
    for a, b in (rs[:2] for rs in pairs):
        assert 0 <= abs((b.received_at - a.received_at).total_seconds()) <= 2.5

    # Every robot of the archive, and every non-owner speaker, is in the example configuration.
    config = load_config(REPO / "config" / "business.example.yaml")
    assert {r.robot_id for r in records} == {robot.robot_id for robot in config.robots}
    speakers = {b.receivedName for b in bodies}
    roster = set(config.staff) | set(config.operators) | set(config.assistants)
    assert roster <= speakers
    assert config.robot_names & speakers  # our robots' own echoes


def test_demo_play_posts_each_webhook_to_its_endpoint(tmp_path: Path) -> None:
    import httpx

    from commands.demo import SAMPLE_DAY, load_archive, play

    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"code": 0, "message": "success", "data": {}})

    started = time.monotonic()
    stats = play(SAMPLE_DAY, "http://gw", duration_s=0.5, transport=httpx.MockTransport(gateway))
    assert time.monotonic() - started < 10

    expected = [r for r in load_archive(SAMPLE_DAY) if r["kind"] != "accepted"]
    assert stats.sent == len(seen) == len(expected) and stats.failed == 0
    for request, record in zip(seen, expected, strict=True):
        assert request.method == "POST"
        assert request.url.path == f"/worktool/callback/{record['kind']}"
        assert request.url.params["robotId"] == record["robot_id"]
    content_types = {r.headers["content-type"].split(";")[0] for r in seen}
    assert content_types == {"application/json", "application/x-www-form-urlencoded"}
    form = next(r for r in seen if r.headers["content-type"].startswith("application/x-www-form"))
    assert "receivedName=" in form.content.decode()
