"""Chaos, the finding of issue 13 (#2): an external broker killed under load and restarted EMPTY (the
embedded broker is memory-only; the gateway re-creates the topics when its spool drains). The dataflow
keeps running and is NOT restarted: it must notice the recreated topic by itself and read it from its
beginning, so every webhook acknowledged from the kill on reaches PostgreSQL; the reset is counted and
shown on /healthz; and the webhooks that died in the broker's memory are reported as a pipeline_gap
(the dataflow is paused for a moment before the kill, so that some acknowledged records are unread)."""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from infra.embedded import EmbeddedKafka, free_port
from infra.kafka_admin import ensure_topics_for
from tests.support import answers, chaos_scale, spawn, spawn_dataflow, stop, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def body(text: str) -> dict:
    return {"spoken": text, "rawSpoken": text, "receivedName": "用户甲", "groupName": f"群{hash(text) % 7}",
            "groupRemark": "", "roomType": 1, "atMe": False, "textType": 1}  # fmt: skip


class Poster:
    """Webhooks at about `rate` per second; remembers when each one was acknowledged."""

    def __init__(self, base: str, rate: float = 30.0) -> None:
        self.base, self.interval = base, 1.0 / rate
        self.acknowledged: list[tuple[float, str]] = []
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        with httpx.Client(base_url=self.base, timeout=3) as client:
            while not self._stop.is_set():
                text = f"断点{i:05d}"
                i += 1
                try:
                    r = client.post(
                        "/worktool/callback/message", params={"robotId": "wt_day"}, json=body(text)
                    )
                    if r.status_code == 200:
                        self.acknowledged.append((time.monotonic(), text))
                    else:
                        self.refused.append(f"{text}: {r.status_code}")
                except httpx.HTTPError as e:
                    self.refused.append(f"{text}: {type(e).__name__}")
                time.sleep(self.interval)

    def __enter__(self) -> Poster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def stored(database_url: str) -> set[str]:
    with psycopg.connect(database_url, connect_timeout=3) as conn:
        rows = conn.execute("SELECT content FROM session_messages WHERE content LIKE '断点%'").fetchall()
    return {r[0] for r in rows}


def metric(url: str, name: str) -> float:
    try:
        text = httpx.get(url, timeout=3).text
    except httpx.HTTPError:
        return -1.0
    values = [float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)]
    return sum(values) if values else 0.0


def test_broker_restarted_empty_under_load_nothing_acknowledged_after_the_kill_is_skipped(
    settings_factory, tmp_path: Path
) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", port=free_port()).start()
    settings = settings_factory(
        kafka_bootstrap_servers=broker.url, gap_grace_s=5.0, dataflow_metrics_port=free_port()
    )
    ensure_topics_for(settings)
    metrics_url = f"http://127.0.0.1:{settings.dataflow_metrics_port}/metrics"
    flow = spawn_dataflow(settings, tmp_path / "dataflow.log")
    gateway = spawn([sys.executable, "-m", "commands.cli", "gateway"], settings, tmp_path / "gateway.log")
    base = f"http://127.0.0.1:{settings.http_port}"
    try:
        wait_until(lambda: answers(f"{base}/healthz"), 120, what="/healthz 200")
        with Poster(base) as poster:
            wait_until(lambda: len(stored(settings.database_url)) >= 30, 60, what="the first webhooks stored")
            os.kill(flow.pid, signal.SIGSTOP)  # acknowledged from now on: in the broker, not yet read
            time.sleep(2.0)
            killed_at = time.monotonic()
            os.kill(broker.pid, signal.SIGKILL)
            os.kill(flow.pid, signal.SIGCONT)
            time.sleep(3.0 * chaos_scale())  # the gateway spools meanwhile
            broker.stop()  # reap the killed process
            broker.start()  # empty: no topics until the gateway's drainer creates them
            time.sleep(8.0 * chaos_scale())  # keep sending into the recreated topic
        assert flow.poll() is None, "the dataflow died"
        assert poster.refused == []
        after_kill = {text for t, text in poster.acknowledged if t >= killed_at}
        before_kill = {text for t, text in poster.acknowledged if t < killed_at}
        assert len(after_kill) > 100

        # Every webhook acknowledged from the kill on reaches PostgreSQL, without a dataflow restart.
        def all_stored() -> set[str] | None:
            have = stored(settings.database_url)
            return have if after_kill <= have else None

        try:
            have = wait_until(all_stored, 120, interval=1.0, what="every webhook acknowledged after the kill")
        except AssertionError:
            missing = sorted(after_kill - stored(settings.database_url))
            pytest.fail(
                f"{len(missing)} of {len(after_kill)} acknowledged after the kill never stored: {missing[:5]}"
            )

        # The reset was loud: a metric and a /healthz notice.
        assert metric(metrics_url, "worktool_dataflow_offset_resets_total") >= 1
        health = httpx.get(f"{base}/healthz", timeout=5).json()
        assert any("recreated" in notice for notice in health.get("notices", [])), health

        # What died in the broker's memory is reported, not silent. Records still in the gateway's spool
        # when the (short) grace ran out are reported too, then recovered when they arrive: what stays
        # missing is exactly what the broker lost.
        lost = before_kill - have
        assert lost, "nothing was in flight: the pause before the kill did not hold records back"

        def still_missing() -> float:
            raised = metric(metrics_url, "worktool_pipeline_gap_records_total")
            return raised - metric(metrics_url, "worktool_pipeline_gap_recovered_records_total")

        wait_until(
            lambda: still_missing() == len(lost),
            60,
            interval=1.0,
            what=f"a pipeline_gap of {len(lost)} records",
        )
        with psycopg.connect(settings.database_url) as conn:
            alerts = conn.execute(
                "SELECT status FROM alert_history WHERE alert_type = 'pipeline_gap'"
            ).fetchall()
        assert alerts and alerts[0][0] in ("open", "escalated")
    finally:
        stop(gateway)
        stop(flow)
        broker.stop()
