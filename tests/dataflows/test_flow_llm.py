"""The live wiring's classifier choice with an LLM configured: the flow takes the LLM's verdicts, publishes
every call as an `ai_call` event, and the Postgres projection writes them to ai_io_logs. The LLM is a
local server speaking the OpenAI protocol; everything else is real."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from bytewax.testing import TestingSink, TestingSource

from classifiers import build_classifier, call_log_events
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from fakes.llm_servers import FakeOpenAIServer, http_error, ok
from sinks.postgres import PostgresEventSink
from tests.dataflows.records import msg, raw, with_ticks
from worktool.config import BusinessConfig

pytestmark = pytest.mark.integration


def test_llm_verdicts_and_call_logs_flow_to_events_and_postgres(settings_factory, entry_point):
    with FakeOpenAIServer() as server:
        # the first message's call fails for good (500 on every retry): its local result (the rules read
        # it, the trained model typed it) must stand
        server.script(http_error(500), http_error(500), http_error(500), http_error(500))
        server.default = ok()
        settings = settings_factory(
            llm_provider="openai",
            llm_base_url=server.base_url,
            llm_model="fake-model",
            llm_api_key="sk-test-secret",
            llm_timeout_s=2.0,
            llm_max_in_flight=2,
        )
        config = BusinessConfig()
        classifier = build_classifier(settings, config)
        records = [
            raw("message", "wt_day", i * 5.0, msg(f"这个号怎么还没有收益{i}", f"用户{i}")) for i in range(4)
        ]
        events: list = []
        sinks = FlowSinks(events=[TestingSink(events), PostgresEventSink(settings.database_url)])
        try:
            entry_point(
                build_flow(
                    TestingSource(with_ticks(records), batch_size=1),
                    sinks,
                    classifier,
                    FlowOptions.from_settings(settings, config),
                    extra_events=call_log_events(classifier),
                ),
                epoch_interval=timedelta(0),
            )
        finally:
            classifier.close()

    classified = sorted((e for e in events if e.event == "message_classified"), key=lambda e: e.event_time)
    assert [e.data.decided_by for e in classified] == ["model", "llm", "llm", "llm"]
    assert all(e.data.message_type == "chat_complaint" for e in classified[1:])  # the fake LLM's answer
    calls = [e for e in events if e.event == "ai_call"]
    assert sorted(c.data.status for c in calls) == ["error", "ok", "ok", "ok"]
    assert all("sk-test-secret" not in str(c.data) for c in calls)
    with psycopg.connect(settings.database_url) as conn:
        logged = conn.execute(
            "select status, model_id, total_tokens from ai_io_logs order by status"
        ).fetchall()
        decided = conn.execute(
            "select decided_by, count(*) from session_messages group by 1 order by 1"
        ).fetchall()
    assert [r[0] for r in logged] == ["error", "ok", "ok", "ok"] and logged[1][1] == "fake-model"
    assert logged[1][2] and logged[1][2] > 0
    assert decided == [("llm", 3), ("model", 1)]
