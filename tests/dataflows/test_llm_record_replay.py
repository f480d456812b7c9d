"""Replays reproduce what live decided with an LLM (issue 16 part 4), on the real broker and database: the
live dataflow process, classifying and writing replies with a local fake LLM and the shipped knowledge
base, records every answer on worktool.llm (used ones and fallbacks: invalid, timeout); `worktool archive` includes them; `worktool replay` of that
archive without any LLM configured gives the live run's events (its ai_call events aside: they describe
provider calls, and a replay makes none), as does a sliced replay with an LLM configured, which is never
asked; the archive without its recorded answers replays with the rules and says so."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from dataflows.replay import replay_archive
from fakes.llm_servers import DEFAULT_ANSWER, Behaviour, FakeOpenAIServer, malformed, ok, slow
from infra.archive_io import iter_lines
from tests.support import REPO, consume_all, env_for, produce, spawn_dataflow, stop, wait_until
from worktool.models import iso, raw_record_key, to_utc

pytestmark = pytest.mark.integration

RULES = """
robots:
  - {robot_id: wt_day, name: 运营助理小A, role: reply_day}
staff: [售后小王]
"""
OWNER = "张三"
USER_ANSWER = {**DEFAULT_ANSWER, "message_type": "chat_daily", "sentiment": 0.1, "need_reply": True}
STAFF_ANSWER = {**DEFAULT_ANSWER, "message_type": "staff_reply_user", "sentiment": 0.0, "need_reply": False}


REPLY = "您好，收到，稍后为您核实。"  # the LLM's reply to an owner (issue 16 part 3)


def answer_for(body: dict[str, Any]) -> Behaviour:
    if "用简体中文回复" in body["messages"][0]["content"]:  # the reply writer's instructions
        return Behaviour(content=REPLY)
    user = "".join(m["content"] for m in body["messages"] if m["role"] == "user")
    if '"号主的问题":' in user:  # the staff answer to the owner's question: scored low by the LLM
        return ok({**STAFF_ANSWER, "reply_quality": 0.15})
    if "[投诉]" in user:
        return ok()  # chat_complaint, need_reply, sentiment -0.8
    if "[格式坏]" in user:
        return malformed()
    if "[超时]" in user:
        return slow(6.0)
    return ok(USER_ANSWER)


def message(text: str, sender: str, group: str, raw: str | None = None) -> dict:
    return {"spoken": text, "rawSpoken": raw or text, "receivedName": sender, "groupName": group,
            "groupRemark": "", "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip


SCRIPT = [
    message("我的佣金什么时候到账？", OWNER, "A群"),
    message("你问别人去", "售后小王", "A群", raw=f"@{OWNER}\u2005你问别人去"),
    message("[投诉]说好的收益呢，我要投诉你们", "李四", "B群"),
    message("[格式坏]这个号怎么还没有收益", "王五", "C群"),
    message("[超时]什么时候结算", "赵六", "D群"),
]


def without_ai_calls(events: list[dict]) -> list[bytes]:
    return sorted(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) for e in events if e["event"] != "ai_call")


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "commands.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done.stderr = " ".join(done.stderr.split())  # as one line: rich wraps it at the terminal's width
    return done


def replies_settled(live: Any) -> bool:
    """Every message's classification is recorded, and every reply planned has gone out (its decision
    recorded) or was withdrawn (staff answered first)."""
    recorded = [r["value"] for r in consume_all(live.kafka_bootstrap_servers, live.topic_llm, idle_s=0.5)]
    events = [r["value"] for r in consume_all(live.kafka_bootstrap_servers, live.topic_monitor, idle_s=0.5)]
    planned = {e["data"]["message_id"] for e in events if e["event"] == "reply_scheduled"}
    sent = {e["data"]["cause_id"] for e in events if e["event"] == "command_created" and e["data"]["cause_event"] == "reply_scheduled"}  # fmt: skip
    dropped = {e["data"]["message_id"] for e in events if e["event"] in ("reply_withdrawn", "reply_skipped")}
    replies = [r for r in recorded if r["operation"] == "reply"]
    classified = [r for r in recorded if r["operation"] == "classify"]
    return (
        len(classified) >= len(SCRIPT)
        and bool(sent)
        and planned <= sent | dropped
        and len(replies) >= len(sent)
    )


def read_events(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def test_a_live_run_with_an_llm_replays_to_the_same_events_from_its_recorded_answers(
    settings_factory, unique_topics, tmp_path: Path
) -> None:
    config = tmp_path / "rules.yaml"
    config.write_text(RULES, encoding="utf-8")
    topics = unique_topics()
    with FakeOpenAIServer(default=answer_for) as server:
        llm = dict(
            llm_provider="openai", llm_base_url=server.base_url, llm_model="fake-model",
            llm_api_key="sk-test-recorded", llm_timeout_s=1.0,
        )  # fmt: skip
        live = settings_factory(**topics, config_path=config, **llm)
        cli(env_for(live), "kb", "import", "--builtin")  # the replies quote the shipped knowledge base
        flow = spawn_dataflow(live, tmp_path / "dataflow.log")
        try:
            for body in SCRIPT:  # stamped as the gateway stamps: now
                record = {"kind": "message", "robot_id": "wt_day", "received_at": iso(datetime.now(UTC)), "body": body}  # fmt: skip
                produce(live.kafka_bootstrap_servers, live.topic_raw,
                        [(raw_record_key("message", "wt_day", body), orjson.dumps(record))])  # fmt: skip
                time.sleep(0.3)
            wait_until(lambda: replies_settled(live), 120, what="the recorded answers on worktool.llm")
            time.sleep(3)  # ticks past the last record (allowed lateness 1 s): what is due has fired
        finally:
            stop(flow)
        requests = server.request_count
        events = [r["value"] for r in consume_all(live.kafka_bootstrap_servers, live.topic_monitor)]

        classified = {e["data"]["text"]: e["data"] for e in events if e["event"] == "message_classified"}
        assert [classified[b["spoken"]]["decided_by"] == "llm" for b in SCRIPT] == [True, True, True, False, False]  # fmt: skip
        assert classified["你问别人去"]["reply_quality_source"] == "llm"
        assert {e["data"]["status"] for e in events if e["event"] == "ai_call"} == {
            "ok",
            "invalid",
            "timeout",
        }
        assert any(e["event"] == "intervention_needed" and e["data"]["reason"] == "staff_low_reply_quality" for e in events)  # fmt: skip

        # `worktool archive`: raw and the recorded answers, in event time
        archive = tmp_path / "day.jsonl.zst"
        rules_only = live.model_copy(update={"llm_provider": None, "llm_base_url": None, "llm_api_key": None})
        done = cli(env_for(rules_only), "archive", "--out", str(archive))
        assert live.topic_llm in done.stderr
        lines = list(iter_lines(archive))
        answers = [orjson.loads(x) for x in lines if x.startswith(b'{"kind":"llm_answer"')]
        assert len(lines) == len(SCRIPT) + len(answers)
        classify = [a for a in answers if a["operation"] == "classify"]
        assert sorted((a["status"], a["detail"].get("reason")) for a in classify) == [
            ("fallback", "invalid"), ("fallback", "timeout"), ("ok", None), ("ok", None), ("ok", None),
        ]  # fmt: skip
        # the replies to owners, written by the LLM: the text sent is on the command and recorded
        sent = {e["data"]["command_id"]: e["data"] for e in events if e["event"] == "command_created" and e["data"]["cause_event"] == "reply_scheduled"}  # fmt: skip
        replies = [a for a in answers if a["operation"] == "reply"]
        assert replies and all(a["status"] == "ok" and a["output"].endswith(REPLY) for a in replies)
        assert all(sent[a["key"]]["content"] == a["output"] and sent[a["key"]]["reply"]["source"] == "llm" for a in replies)  # fmt: skip
        assert any(sent[a["key"]]["reply"]["passages"] for a in replies)  # with the passages it was given
        stamps = [to_utc(orjson.loads(x).get("received_at") or orjson.loads(x)["at"]) for x in lines]
        assert stamps == sorted(stamps)

        # `worktool replay` without any LLM configured: the live events
        until = max(e["event_time"] for e in events)
        out = tmp_path / "replayed.jsonl"
        done = cli(env_for(rules_only), "replay", str(archive), "--out", str(out), "--until", until)
        assert (
            f"{5 + len(replies)} recorded LLM answers in this archive (5 classifications, {len(replies)} replies)"
            in done.stderr
        )
        assert "3 recorded LLM classifications used" in done.stderr
        replayed = read_events(out)
        assert not [e for e in replayed if e["event"] == "ai_call"]
        assert without_ai_calls(replayed) == without_ai_calls(events)

        # a sliced replay with an LLM configured: the same, and the provider is never asked
        buffer = io.BytesIO()
        replay_archive(archive, buffer, settings=live, until=to_utc(until), workers=2)
        sliced = [orjson.loads(x) for x in buffer.getvalue().splitlines() if x]
        assert without_ai_calls(sliced) == without_ai_calls(events)
        assert server.request_count == requests

    # the same archive without its recorded answers: the rules classify, and the replay says so
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(b"".join(x + b"\n" for x in lines if not x.startswith(b'{"kind":"llm_answer"')))
    out = tmp_path / "bare-replayed.jsonl"
    done = cli(env_for(rules_only), "replay", str(bare), "--out", str(out), "--until", until)
    assert (
        done.stderr.count(
            "no recorded LLM answers in this archive: classification by the rules, replies from the templates"
        )
        == 1
    )
    assert (
        "no recorded LLM answers: classification by the rules, replies from the templates" in done.stderr
    )  # the summary line
    by_rules = [e["data"] for e in read_events(out) if e["event"] == "message_classified"]
    assert len(by_rules) == len(SCRIPT) and all(d["decided_by"] in ("rules", "model") for d in by_rules)
