"""Records later than the allowed lateness: a hung broker (SIGSTOP) makes the gateway spool what it
acknowledges; the spool drains after the broker resumes, while the dataflow's watermark kept moving with
the wall clock. Every acknowledged message is still processed exactly once, and the late ones are
counted (`worktool_dataflow_late_records_total`)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from infra.embedded import EmbeddedKafka, free_port
from infra.kafka_admin import ensure_topics, topic_plan
from tests.support import answers, spawn, spawn_dataflow, stop, wait_until

pytestmark = pytest.mark.integration


def body(text: str) -> dict:
    return {"spoken": text, "rawSpoken": text, "receivedName": "用户甲", "groupName": "A群", "groupRemark": "",
            "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip


def late_records(metrics_url: str) -> float:
    text = httpx.get(metrics_url, timeout=5).text
    found = re.search(r"^worktool_dataflow_late_records_total ([0-9.e+]+)$", text, flags=re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_spool_drained_after_a_hung_broker_is_processed_late_but_completely(
    settings_factory, tmp_path: Path
) -> None:
    with EmbeddedKafka(tmp_path / "kafka") as kafka:
        metrics_port = free_port()
        settings = settings_factory(
            kafka_bootstrap_servers=kafka.url, allowed_lateness_s=1.0,
            dataflow_metrics_port=metrics_port,
        )  # fmt: skip
        ensure_topics(kafka.url, topic_plan(settings))
        flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
        gateway = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log")
        base = f"http://127.0.0.1:{settings.http_port}"
        try:
            wait_until(lambda: answers(f"{base}/healthz"), 90, what="/healthz 200")
            texts = [f"消息{i}" for i in range(16)]

            def post(text: str) -> None:
                r = httpx.post(f"{base}/worktool/callback/message", params={"robotId": "wt_day"}, json=body(text),
                               timeout=5)  # fmt: skip
                assert r.status_code == 200, r.text

            for text in texts[:4]:
                post(text)
            time.sleep(2)
            os.kill(kafka.pid, signal.SIGSTOP)  # the broker hangs: acknowledged records go to the spool
            try:
                for text in texts[4:]:
                    post(text)
                time.sleep(4)  # the watermark moves on with the wall clock meanwhile
            finally:
                os.kill(kafka.pid, signal.SIGCONT)

            def stored() -> dict[str, int]:
                with psycopg.connect(settings.database_url) as conn:
                    rows = conn.execute(
                        "SELECT content, count(*) FROM session_messages GROUP BY 1"
                    ).fetchall()
                return dict(rows)

            counts = wait_until(
                lambda: len(c := stored()) == len(texts) and c, 90, what="every message stored"
            )
            assert counts == dict.fromkeys(texts, 1)
            assert late_records(f"http://127.0.0.1:{metrics_port}/metrics") >= 1
        finally:
            stop(gateway)
            stop(flow)
