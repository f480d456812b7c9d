"""The live stack for the monitor-page and dashboard tests: the embedded broker and PostgreSQL (session
fixtures), the dataflow process, a gateway and the console app, each a real process on 127.0.0.1, and
the short recorded stream they are shown (records of commands/data/sample_day.jsonl). The business
configuration is config/business.example.yaml with an after-sales desk (two of its staff, always on
duty) so that the stream's after-sales request gets an assignee."""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from commands.demo import SAMPLE_DAY, load_archive, post_record
from infra.embedded import free_port
from infra.kafka_admin import ensure_topics
from tests.support import REPO, answers, spawn, spawn_dataflow, stop, wait_until
from worktool.settings import Settings

TOKEN = "monitor-page-token-3c91e7"

# A morning in the B and A groups, from the sample day: the day robot comes online, an owner asks for
# help with the scan verification (chat_after_sales: a task, which the desk assigns), a user complains
# twice (an alert, an intervention), a staff member answers, a user deletes products and an operator
# answers him harshly (another alert). Picked by robot and text, so edits elsewhere in the day are fine.
STREAM = (
    ("online", "wt_day_01", None),
    ("message", "wt_monitor_01", "我的视频号发不了作品，需要扫码认证吗"),
    ("message", "wt_monitor_01", "我要投诉你们，说好的一天300到500呢"),
    ("message", "wt_monitor_01", "再这样我就去平台举报了！"),
    ("message", "wt_monitor_01", "收益是按实际销售算的"),
    ("message", "wt_monitor_01", "我把橱窗里的商品删了"),
    ("message", "wt_monitor_01", "谁让你删的？马上给我配合扫码"),
)


# The desk: both members of the example's `staff`, on duty whatever the hour the test runs at; the scan
# verification needs the `verification` skill, so the request goes to 售后-小李.
DESK = [
    {"name": "售后-小李", "skills": ["verification"], "max_open_tasks": 3, "on_duty": []},
    {"name": "售后-小张", "skills": ["account"], "max_open_tasks": 5, "on_duty": []},
]
ASKING_OWNER = "用户甲-138****0000"
ASSIGNEE = "售后-小李"


def business_config(path: Path) -> Path:
    """config/business.example.yaml with the desk (`after_sales.desk`), written to `path`."""
    config = yaml.safe_load((REPO / "config" / "business.example.yaml").read_text(encoding="utf-8"))
    assert {m["name"] for m in DESK} <= set(config["staff"])  # desk members must be staff
    config.setdefault("after_sales", {})["desk"] = DESK
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def short_stream() -> list[dict[str, Any]]:
    records = load_archive(SAMPLE_DAY)
    picked = []
    for kind, robot, text in STREAM:
        [record] = [
            r
            for r in records
            if r["kind"] == kind
            and r["robot_id"] == robot
            and (text is None or str(r["body"].get("spoken", "")).startswith(text))
        ][:1]
        picked.append(record)
    return picked


@dataclass
class Stack:
    settings: Settings
    dataflow_metrics_port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    played: bool = False

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def dataflow_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.dataflow_metrics_port}/metrics"

    def play(self) -> None:
        """POST the short stream to the gateway (JSON bodies), each acknowledged."""
        with httpx.Client(base_url=self.gateway_url, timeout=10) as client:
            for record in short_stream():
                response = post_record(client, record, as_form=False)
                assert response.status_code == 200 and response.json()["code"] == 0, response.text
        self.played = True


def start_stack(kafka_bootstrap: str, redis_url: str, database_url: str, logs: Path) -> Stack:
    suffix = uuid.uuid4().hex[:10]
    defaults = Settings.model_fields
    topics = {
        f: f"{defaults[f].default}.{suffix}"
        for f in ("topic_raw", "topic_control", "topic_commands", "topic_monitor", "topic_dlq")
    }
    ensure_topics(kafka_bootstrap, {name: 3 for name in topics.values()})
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        redis_url=redis_url,
        data_dir=logs / "data",
        config_path=business_config(logs / "business.yaml"),
        http_port=free_port(),
        api_port=free_port(),
        api_token=TOKEN,
        dataflow_metrics_host="127.0.0.1",
        dataflow_metrics_port=free_port(),
        raw_partitions=3,
        **topics,
    )
    assert settings.dataflow_metrics_port
    stack = Stack(settings, dataflow_metrics_port=settings.dataflow_metrics_port)
    python = [sys.executable, "-m", "commands.cli"]
    try:
        stack.processes.append(spawn_dataflow(settings, logs / "dataflow.log"))
        stack.processes.append(spawn([*python, "gateway"], settings, logs / "gateway.log"))
        stack.processes.append(spawn([*python, "console"], settings, logs / "console.log"))
        wait_until(lambda: answers(f"{stack.gateway_url}/healthz"), 120, what="the gateway and the dataflow")
        wait_until(lambda: answers(f"{stack.console_url}/healthz"), 60, what="the console")
        wait_until(lambda: answers(stack.dataflow_metrics_url), 60, what="the dataflow's metrics")
    except BaseException:
        stop_stack(stack, logs)
        raise
    return stack


def stop_stack(stack: Stack, logs: Path) -> None:
    for proc in reversed(stack.processes):
        stop(proc)
    for log in sorted(logs.glob("*.log")):  # shown by pytest when a test of the module failed
        print(f"---- {log.name}\n{log.read_text(errors='replace')[-4000:]}")
