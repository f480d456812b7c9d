"""Chaos: PostgreSQL down for 10 s and for 120 s while webhooks keep arriving, with the real gateway and
dataflow processes. The gateway answers every webhook 200 throughout (intake does not need the
database), the dataflow waits the outage out (no give-up, no crash), and afterwards every acknowledged
webhook is in session_messages exactly once."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from infra.embedded import EmbeddedPostgres, free_port
from infra.migrate import apply_up
from tests.support import answers, spawn, spawn_dataflow, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def body(text: str) -> dict:
    return {"spoken": text, "rawSpoken": text, "receivedName": "用户甲", "groupName": "A群", "groupRemark": "",
            "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip


@pytest.mark.parametrize("outage_s", [10, 120], ids=["10s", "120s"])
def test_postgres_down_while_webhooks_arrive(
    settings_factory, unique_topics, tmp_path: Path, outage_s: int
) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", port=free_port(), durable=False).start()
    try:
        apply_up(pg.url)
        settings = settings_factory(**unique_topics(), database_url=pg.url)
        flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
        gateway = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log")
        base = f"http://127.0.0.1:{settings.http_port}"
        acknowledged: list[str] = []
        refused: list[str] = []
        done = threading.Event()

        def post_for_ever() -> None:
            i = 0
            with httpx.Client(base_url=base, timeout=5) as client:
                while not done.is_set():
                    text = f"消息{i}"
                    try:
                        r = client.post(
                            "/worktool/callback/message", params={"robotId": "wt_day"}, json=body(text)
                        )
                        (acknowledged if r.status_code == 200 else refused).append(text)
                    except httpx.HTTPError:
                        refused.append(text)
                    i += 1
                    time.sleep(0.25)

        try:
            wait_until(lambda: answers(f"{base}/healthz"), 90, what="/healthz 200")
            poster = threading.Thread(target=post_for_ever, daemon=True)
            poster.start()
            time.sleep(3)
            pg.stop()  # a database outage: the dataflow's Postgres sink must wait
            time.sleep(outage_s)
            assert flow.poll() is None, "the dataflow gave up during the outage"
            pg.start()
            time.sleep(3)
            done.set()
            poster.join(10)

            def stored() -> dict[str, int]:
                with psycopg.connect(pg.url) as conn:
                    return dict(
                        conn.execute("SELECT content, count(*) FROM session_messages GROUP BY 1").fetchall()
                    )

            counts = wait_until(
                lambda: len(c := stored()) >= len(acknowledged) and c, 120, what="every message"
            )
            assert refused == []
            assert counts == dict.fromkeys(acknowledged, 1)
            assert flow.poll() is None
        finally:
            done.set()
            stop(gateway)
            stop(flow)
    finally:
        pg.stop()
