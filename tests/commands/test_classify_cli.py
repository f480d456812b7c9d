"""`worktool classify` / `worktool accuracy` and the classifier factory."""

import io
import os
import subprocess
import sys
import types
from datetime import timedelta

import orjson
import pytest

from classifiers import ClassifierUnavailable, build_classifier
from commands import classify as classify_cli
from operators.classify import RuleClassifier
from tests.support import DATA, REPO
from worktool.config import BusinessConfig
from worktool.settings import Settings, get_settings

ROSTER = DATA / "labelled_roster.yaml"
AT = "2026-11-20T02:00:00.000Z"


def message(body: dict) -> dict:
    base = {
        "spoken": "",
        "rawSpoken": "",
        "receivedName": "用户甲",
        "groupName": "视频号运营A群",
        "groupRemark": "A群",
        "roomType": 1,
        "atMe": "false",
        "textType": 1,
    }
    return {"kind": "message", "robot_id": "wt_day", "received_at": AT, "body": {**base, **body}}


LINES = [
    message(
        {
            "spoken": "我的视频号发不了作品，需要扫码认证吗",
            "rawSpoken": "@运营助理小A 我的视频号发不了作品，需要扫码认证吗",
            "atMe": "true",
        }
    ),
    message({"spoken": "[暂停回复]", "rawSpoken": "[暂停回复]", "receivedName": "售后小王"}),
    message({"spoken": "", "textType": 2, "fileBase64": "iVBORw0KGgo="}),
    message({"spoken": "您好", "receivedName": "运营助理小A"}),
    {"kind": "result", "robot_id": "wt_day", "received_at": AT, "body": {"messageId": "1", "errorCode": 0}},
]


@pytest.fixture
def roster_env(monkeypatch):
    monkeypatch.setenv("WORKTOOL_CONFIG", str(ROSTER))
    monkeypatch.delenv("WORKTOOL_LLM_PROVIDER", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_cli(data: bytes) -> tuple[int, list[dict]]:
    out = io.BytesIO()
    code = classify_cli.cli_classify(io.BytesIO(data), out)
    return code, [orjson.loads(line) for line in out.getvalue().splitlines()]


def jsonl(rows: list) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_classify_writes_one_line_per_record(roster_env):
    code, rows = run_cli(jsonl(LINES))
    assert code == 0 and len(rows) == len(LINES)
    first, command, image, robot, result = rows
    assert first["sender_type"] == "user" and first["message_type"] == "chat_after_sales"
    assert (
        first["need_reply"] is True and first["decided_by"] == "model"
    )  # the rules read it, the model typed it
    assert set(first) >= {
        "message_id",
        "sender_type",
        "message_type",
        "confidence",
        "reason",
        "decided_by",
        "staff_command",
        "sentiment",
    }
    assert command["sender_type"] == "staff" and command["staff_command"] == "pause_replies"
    assert image["message_type"] == "chat_other" and "image" in image["reason"]
    assert image["decided_by"] == "rules"  # structure: the model is not asked
    assert robot["sender_type"] == "robot" and robot["message_type"] is None
    assert result == {"line": 5, "error": "not a message record (kind=result)"}


def test_bad_lines_become_error_lines_and_order_is_kept(roster_env):
    bad_body = message({"receivedName": ""})
    group_without_name = message({"groupName": "", "groupRemark": "", "spoken": "在"})
    data = (
        b"{not json\n\n"
        + jsonl([{"kind": "message"}, bad_body, group_without_name, LINES[0]])
        + b"\xff\xfe\n"
    )
    code, rows = run_cli(data)
    assert code == 0
    assert [("error" in r) for r in rows] == [True, True, True, True, False, True]
    assert rows[0]["error"].startswith("not JSON")
    assert rows[1]["error"].startswith("not a raw record")
    assert "receivedName" in rows[2]["error"]
    assert "groupName" in rows[3]["error"]
    assert rows[4]["message_type"] == "chat_after_sales"


def test_many_records_are_batched_in_order(roster_env):
    texts = [f"第{i}个问题：佣金什么时候结算？" if i % 2 else "好的" for i in range(150)]
    code, rows = run_cli(jsonl([message({"spoken": t}) for t in texts]))
    assert code == 0
    assert [r["message_type"] for r in rows] == [
        "chat_daily" if i % 2 else "chat_cooperation" for i in range(150)
    ]


class _Broken(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        raise OSError("device gone")


def test_unreadable_stdin_exits_1(roster_env):
    assert classify_cli.cli_classify(io.BufferedReader(_Broken()), io.BytesIO()) == 1


def test_bad_configuration_exits_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stafff: []", encoding="utf-8")
    monkeypatch.setenv("WORKTOOL_CONFIG", str(bad))
    get_settings.cache_clear()
    try:
        assert classify_cli.cli_classify(io.BytesIO(b""), io.BytesIO()) == 2
    finally:
        get_settings.cache_clear()
    assert "stafff" in capsys.readouterr().err


def test_worktool_classify_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKTOOL_")}
    env["WORKTOOL_CONFIG"] = str(ROSTER)
    proc = subprocess.run(
        [sys.executable, "-m", "commands.cli", "classify"],
        input=jsonl(LINES),
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    rows = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("message_type") for r in rows[:4]] == [
        "chat_after_sales",
        "staff_other",
        "chat_other",
        None,
    ]


# --- build_classifier -------------------------------------------------------------------------------


def test_rules_unless_an_llm_is_configured():
    assert isinstance(build_classifier(Settings(), BusinessConfig()), RuleClassifier)


def test_llm_wraps_the_rules(monkeypatch):
    seen = {}

    class FakeLLM:
        def __init__(self, rules, settings, **options):
            seen.update(rules=rules, settings=settings, **options)

    monkeypatch.setitem(sys.modules, "classifiers.llm", types.SimpleNamespace(LLMClassifier=FakeLLM))
    settings = Settings(WORKTOOL_LLM_PROVIDER="openai")
    classifier = build_classifier(settings, BusinessConfig())
    assert isinstance(classifier, FakeLLM)
    assert isinstance(seen["rules"], RuleClassifier) and seen["settings"] is settings
    assert seen["reply_window"] == timedelta(minutes=30)  # intervention.reply_window_minutes


def test_missing_or_misconfigured_llm_is_an_error_at_start_up(monkeypatch):
    settings = Settings(WORKTOOL_LLM_PROVIDER="openai")
    monkeypatch.setitem(sys.modules, "classifiers.llm", None)  # import fails
    with pytest.raises(ClassifierUnavailable, match="cannot be imported"):
        build_classifier(settings, BusinessConfig())

    def broken(rules, settings, **options):
        raise ValueError("WORKTOOL_LLM_MODEL is not set")

    monkeypatch.setitem(sys.modules, "classifiers.llm", types.SimpleNamespace(LLMClassifier=broken))
    with pytest.raises(ClassifierUnavailable, match="WORKTOOL_LLM_MODEL"):
        build_classifier(settings, BusinessConfig())
