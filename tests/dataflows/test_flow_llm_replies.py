"""The recorded day with LLM replies (issue 16): run "live" with the reply generator against a local
server speaking the OpenAI protocol and a knowledge base, the replies to owners are the LLM's, with their
persona, model and passages on the command and its event, and every decision is recorded; the same day
replayed with those recordings and no LLM gives the same events, on one worker and on two; replayed
without them, the template replies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from classifiers import load_type_model
from classifiers.llm.replies import LLMReplyGenerator
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import ArchiveSource
from fakes.llm_servers import Behaviour, FakeOpenAIServer
from operators.classify import RuleClassifier
from operators.knowledge import Passage
from operators.recordings import Recordings
from tests.dataflows.test_rules_replay import CONFIG_PATH, SAMPLE, UNTIL, canonical
from worktool.config import load_config
from worktool.events import MonitorEvent
from worktool.models import LlmRecord
from worktool.settings import Settings

ANSWER = "您好，收到您的问题了，售后同事会尽快跟进处理。"
PASSAGE = Passage(
    id="kb_3", title="售后多久回复", text="工作时间内售后会尽快回复号主。", source="kb.jsonl:3", score=1.0
)
SLOW_EVERY = 4  # every 4th request answers after its deadline: its reply goes out with the template


class Knowledge:
    name = "fake"

    def search(self, query: str, limit: int = 5) -> list[Passage]:
        return [PASSAGE]


def run(options: FlowOptions, workers: int = 1) -> tuple[list[MonitorEvent], list[LlmRecord]]:
    config = load_config(CONFIG_PATH)
    events: list[MonitorEvent] = []
    records: list[LlmRecord] = []
    source = ArchiveSource(SAMPLE, timedelta(seconds=60), batch_size=50, until=UNTIL)
    flow = build_flow(
        source,
        FlowSinks(events=[TestingSink(events)], llm=[TestingSink(records)]),
        RuleClassifier(config, model=load_type_model("builtin")),
        options,
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    return events, records


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[list[MonitorEvent], list[LlmRecord]]]:
    count = {"n": 0}

    def answer(_body: dict[str, Any]) -> Behaviour:
        count["n"] += 1
        return Behaviour(content=ANSWER, delay_s=3.0 if count["n"] % SLOW_EVERY == 0 else 0.05)

    config = load_config(CONFIG_PATH)
    with FakeOpenAIServer(default=answer) as server:
        settings = Settings(llm_provider="openai", llm_base_url=server.base_url, llm_model="fake-model",
                            llm_api_key="sk-test-secret", llm_timeout_s=1.0, database_url=None)  # fmt: skip
        generator = LLMReplyGenerator(settings, config, knowledge=Knowledge())
        try:
            yield run(FlowOptions(config=config, reply_generator=generator))
        finally:
            generator.close()


def replies(events: list[MonitorEvent]) -> list[Any]:
    return [
        e.data for e in events if e.event == "command_created" and e.data.cause_event == "reply_scheduled"
    ]


def test_live_replies_are_the_llms_with_their_provenance_and_every_decision_is_recorded(live) -> None:
    events, records = live
    sent = replies(events)
    by_llm = [c for c in sent if c.reply is not None]
    templates = [c for c in sent if c.reply is None]
    assert by_llm and templates  # the slow answers' replies went out with their templates
    for c in by_llm:
        assert c.content.endswith(ANSWER)
        assert c.content == (
            f"@{c.at_list[0]} {ANSWER}" if c.at_list else ANSWER
        )  # a group reply @s the asker
        assert (c.reply.source, c.reply.model, c.reply.persona) == ("llm", "fake-model", c.persona)
        assert [p.passage_id for p in c.reply.passages] == ["kb_3"] and c.reply.template_id == c.template_id
    senders = {e.data.message_id: e.data.sender_type for e in events if e.event == "message_classified"}
    to_owners = {c.command_id for c in sent if senders[c.cause_id] == "user"}
    assert {r.key for r in records} == to_owners  # the LLM answers owners' questions only
    assert to_owners != {c.command_id for c in sent}  # (an operator's harsh words get the soothing template)
    assert {r.key for r in records if r.status == "ok"} == {c.command_id for c in by_llm}
    assert {r.detail["reason"] for r in records if r.status == "fallback"} == {"timeout"}
    assert all(r.operation == "reply" and r.provider == "openai" for r in records)
    notices = [e for e in events if e.event == "command_created" and e.data.cause_event != "reply_scheduled"]
    assert notices and all(e.data.reply is None for e in notices)


@pytest.mark.parametrize("workers", [1, 2])
def test_the_recorded_day_replays_to_the_same_events_without_an_llm(live, workers: int) -> None:
    events, records = live
    replayed, again = run(
        FlowOptions(config=load_config(CONFIG_PATH), recordings=Recordings(records)), workers
    )
    assert canonical(replayed) == canonical(events)
    assert again == []  # a replay records nothing


def test_without_recordings_the_templates_go_out(live) -> None:
    events, _ = live
    replayed, _ = run(FlowOptions(config=load_config(CONFIG_PATH)))
    assert all(c.reply is None for c in replies(replayed))
    assert {c.command_id for c in replies(replayed)} == {c.command_id for c in replies(events)}
