"""The monitor page in a real browser (Debian's chromium, headless, driven by Playwright) against the
live stack: a short recorded stream played through the gateway moves the counters and the alert list,
an alert's history opens and its cancellation goes through the API and back through the dataflow; a
browser that connects late gets the same picture from Postgres. The owner's after-sales request is a
card on the task board, assigned by the desk; reassigned from its card it moves to the other member
(through the dataflow), and its completion is accepted and written on the control topic. The owner's
customer profile is listed and opens with their task and messages (from the list and from their card).
Then the
Grafana dashboard's metric names are checked against what the processes' /metrics export after that
stream."""

from __future__ import annotations

import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from tests.console.stack import ASKING_OWNER, ASSIGNEE, DESK, TOKEN, Stack, start_stack, stop_stack
from tests.support import REPO, consume_all, wait_until
from worktool.models import ControlRecord

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root, and no user namespaces in every sandbox this runs in
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = REPO / "docs" / "console.png"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "worktool.json"


@pytest.fixture(scope="module")
def stack(
    kafka_bootstrap: str,
    redis_url: str,
    new_database: Callable[..., str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("monitor-stack")
    stack = start_stack(kafka_bootstrap, redis_url, new_database(migrated=True), logs)
    try:
        yield stack
    finally:
        stop_stack(stack, logs)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip("no chromium here (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1000},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        try:
            yield context
        finally:
            context.close()


def text(page: Any, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def number(page: Any, selector: str) -> int:
    return int(text(page, selector))


def open_alert_ids(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT alert_id FROM alert_history WHERE status IN ('open', 'escalated')")
        return {r[0] for r in rows.fetchall()}


def page_alert_ids(page: Any) -> list[str]:
    return page.locator("#alert-list tr[data-alert-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.alertId)"
    )


def log_in_with_the_api_token(page: Any, url: str) -> None:
    page.goto(url)
    page.locator("#login").wait_for(state="visible")
    # A wrong password is refused by the accounts service; the API token (a service account) still works.
    page.fill("#login-username", "supervisor")
    page.fill("#login-password", "wrong")
    page.click("#login-submit")
    page.wait_for_function("document.getElementById('login-error').textContent.includes('用户名或密码错误')")
    page.fill("#login-token", TOKEN)
    page.click("#token-submit")
    page.wait_for_selector("#conn[data-state=live]", timeout=60_000)
    assert page.locator("#login").is_hidden()


def test_the_page_follows_the_stream_and_cancels_an_alert(stack: Stack, browser_context: Any) -> None:
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in_with_the_api_token(page, stack.console_url)
    assert page.evaluate("sessionStorage.getItem('worktool.console.token')") == TOKEN
    assert number(page, "#count-open-alerts") == 0 and number(page, "#ai-classified") == 0
    assert number(page, "#count-active-sessions") == 0

    stack.play()

    # The counters move as the events arrive (nothing reloads the page).
    page.wait_for_function(
        "Number(document.getElementById('ai-classified').textContent) >= 4", timeout=60_000
    )
    page.wait_for_function(
        "Number(document.getElementById('count-open-alerts').textContent) >= 2", timeout=60_000
    )
    assert stack.settings.database_url
    database_url = stack.settings.database_url
    # What the page lists is what alert_history holds open, newest first.
    wait_until(
        lambda: set(page_alert_ids(page)) == open_alert_ids(database_url),
        30,
        what="the page's alerts to match alert_history",
    )
    ids = page_alert_ids(page)
    assert len(ids) == number(page, "#count-open-alerts") >= 2
    levels = [number(page, f"#alerts-level-{n}") for n in (1, 2, 3, 4)]
    assert sum(levels) == len(ids)
    alert_types = page.locator("#alert-list tr[data-alert-id] td:nth-child(2)").all_inner_texts()
    assert "用户投诉" in alert_types and "运营语气强硬" in alert_types
    assert number(page, "#count-active-sessions") == 2  # the A and B groups
    assert number(page, "#count-interventions") >= 1
    assert number(page, "#commands-pending") >= 1  # the alerts' notifications
    assert number(page, "#ai-model") >= 4  # typed by the trained model (the rules decide media and robots)
    page.wait_for_selector("#robot-list tr[data-robot-id=wt_day_01] >> text=在线")
    level4 = page.locator("#alert-list tr.level-4")
    for i in range(level4.count()):  # a level-4 alert stands out
        assert level4.nth(i).evaluate("r => getComputedStyle(r).backgroundColor") != "rgba(0, 0, 0, 0)"

    # The owner's after-sales request is a task the desk gave to the member with the skill it needs.
    card = task_card(page, "assigned")
    card.wait_for(timeout=60_000)
    assert text(card, ".task-type") == "扫码认证" and text(card, ".badge.prio") == "高"
    assert "视频号运营A群" in text(card, ".task-owner")
    assert text(card, ".task-assignee") == ASSIGNEE and "分钟" in text(card, ".task-age")
    page.wait_for_selector(f'#desk-strip [data-staff="{ASSIGNEE}"] >> text=1 / 3')
    assert "在线" in text(page, f'#desk-strip [data-staff="{ASSIGNEE}"]')

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # A browser that connects late starts from Postgres with the same picture.
    late = browser_context.new_page()
    late.goto(stack.console_url)  # the token is per tab (sessionStorage): log in again
    log_in_with_the_api_token(late, stack.console_url)
    late.wait_for_function(
        f"document.querySelectorAll('#alert-list tr[data-alert-id]').length === {len(ids)}"
    )
    assert set(page_alert_ids(late)) == set(ids)
    assert number(late, "#ai-classified") == number(page, "#ai-classified")
    late.close()

    # An alert's history, and its cancellation through the console API and back through the dataflow.
    complaint = page.locator("#alert-list tr[data-alert-id]", has_text="用户投诉").first
    alert_id = complaint.get_attribute("data-alert-id")
    complaint.click()
    dialog = page.locator("#alert-dialog")
    dialog.wait_for(state="visible")
    assert "用户投诉" in text(page, "#alert-title")
    assert "触发" in text(page, "#alert-history")
    assert page.locator("#alert-actions").is_visible()  # the API token may act
    page.click("#alert-cancel")
    assert "原因" in text(page, "#alert-result")  # a reason is required
    page.fill("#alert-reason", "已电话联系用户，问题已解决")
    page.click("#alert-cancel")
    page.wait_for_function("document.getElementById('alert-result').textContent.includes('已提交')")
    page.wait_for_selector("#alert-history .cancellation", timeout=60_000)
    assert "人工取消" in text(page, "#alert-history")
    assert page.locator("#alert-actions").is_hidden()  # closed: nothing more to do
    page.click("#alert-close")
    page.wait_for_function(
        f"!document.querySelector('#alert-list tr[data-alert-id=\"{alert_id}\"]')", timeout=30_000
    )
    assert number(page, "#count-open-alerts") == len(ids) - 1
    assert errors == []


def task_card(page: Any, column: str) -> Any:
    return page.locator(f"#tasks-{column} article.task", has_text=ASKING_OWNER)


def staff_desk(stack: Stack) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=stack.console_url, timeout=10) as client:
        return client.get("/api/staff", headers=headers).json()  # type: ignore[no-any-return]


def test_the_customer_page_shows_an_owners_profile_tasks_and_messages(
    stack: Stack, browser_context: Any
) -> None:
    if not stack.played:
        stack.play()
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in_with_the_api_token(page, stack.console_url)
    row = page.locator("#customer-list tr[data-user-name]", has_text=ASKING_OWNER)
    row.wait_for(timeout=60_000)  # the dataflow's customer_updated rows, read by the page
    assert row.get_attribute("data-band") in ("healthy", "watch", "at_risk")
    assert 0 <= int(text(row, ".customer-score")) <= 100

    # The search narrows the list to the owner; the band filter to those of their band.
    page.fill("#customer-search", ASKING_OWNER[:3])
    page.wait_for_function(
        "[...document.querySelectorAll('#customer-list tr[data-user-name]')]"
        f".every(r => r.dataset.userName.includes({ASKING_OWNER[:3]!r}))"
    )
    page.fill("#customer-search", "")

    # The owner on their task card opens the same customer as their row.
    task_card(page, "assigned").locator(".task-owner.link").click()
    dialog = page.locator("#customer-dialog")
    dialog.wait_for(state="visible")
    assert text(page, "#customer-title") == f"客户 · {ASKING_OWNER}"
    page.wait_for_selector("#customer-tasks tr[data-task-id]")
    profile = text(page, "#customer-profile")
    assert "健康分" in profile and "需求漏斗" in profile and "建单 1" in profile
    assert "扫码认证" in text(page, "#customer-tasks")  # the scan_qr task type's label
    history = page.locator("#customer-history li").all_inner_texts()
    assert history and all("[用户]" in line for line in history)
    page.click("#customer-close")
    assert dialog.is_hidden()
    row.click()
    dialog.wait_for(state="visible")
    assert text(page, "#customer-title") == f"客户 · {ASKING_OWNER}"
    page.click("#customer-close")
    assert errors == []


def test_a_task_is_reassigned_and_completed_from_its_card(stack: Stack, browser_context: Any) -> None:
    if not stack.played:
        stack.play()
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in_with_the_api_token(page, stack.console_url)  # the token's role: supervisor
    card = task_card(page, "assigned")
    card.wait_for(timeout=60_000)
    task_id = card.get_attribute("data-task-id")
    assert card.locator("button").all_inner_texts() == ["完成", "取消", "转派"]

    # Cancelling needs a reason (nothing is sent without one).
    card.locator("button.task-cancel").click()
    page.locator("#task-dialog").wait_for(state="visible")
    page.click("#task-submit")
    assert text(page, "#task-result") == "请填写原因"
    page.click("#task-close")

    # Reassigned from the card: the desk applies it, the task_assigned event reloads the board.
    other = next(m["name"] for m in DESK if m["name"] != ASSIGNEE)
    card.locator("button.task-assign").click()
    assert page.locator("#task-assignee-row").is_visible()
    # 售后-小张 holds the stream's private operation already (an urgent task of its own)
    held = next(m["open_tasks"] for m in staff_desk(stack) if m["name"] == other)
    assert page.locator("#task-assignee option").all_inner_texts() == [f"{other}（在线 {held}/5）"]
    page.select_option("#task-assignee", other)
    page.fill("#task-reason", "小李请假")
    page.click("#task-submit")
    page.wait_for_function("document.getElementById('task-result').textContent.includes('已提交')")
    page.click("#task-close")
    page.wait_for_selector(
        f'#tasks-assigned article[data-task-id="{task_id}"] .task-assignee >> text={other}', timeout=60_000
    )
    page.wait_for_selector(f'#desk-strip [data-staff="{other}"] >> text={held + 1} / 5')

    # Completed from the card: accepted (202), written on the control topic, applied by the dataflow
    # (task_status completed) and the card leaves the board.
    card.locator("button.task-complete").click()
    page.fill("#task-reason", "已扫码认证")
    with page.expect_response(lambda r: r.request.method == "PATCH") as answer:
        page.click("#task-submit")
    assert answer.value.status == 202 and answer.value.json()["task_id"] == task_id
    page.wait_for_function("document.getElementById('task-result').textContent.includes('已提交')")
    page.click("#task-close")
    assert "已提交完成" in text(card, ".task-note")
    assert stack.settings.kafka_bootstrap_servers
    records = [
        ControlRecord.model_validate(r["value"])
        for r in consume_all(stack.settings.kafka_bootstrap_servers, stack.settings.topic_control)
    ]
    done = [r for r in records if r.action == "update_task" and r.task_id == task_id]
    assert [(r.task_outcome, r.reason, r.actor) for r in done] == [("completed", "已扫码认证", "api-token")]
    page.wait_for_selector(f'article[data-task-id="{task_id}"]', state="detached", timeout=60_000)
    assert errors == []


def test_without_a_token_the_state_and_the_stream_are_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.console_url, timeout=10) as client:
        assert client.get("/").status_code == 200  # the page itself holds no data
        assert client.get("/static/monitor.js").status_code == 200
        assert client.get("/static/..%2Fapp.py").status_code == 404
        assert client.get("/api/monitor/state").status_code == 401
        assert client.get("/api/monitor/stream").status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.get("/api/monitor/state", headers=wrong).status_code == 401


# ---------------------------------------------------------------------------------------------
# The Grafana dashboard

METRIC = re.compile(r"\b(?:worktool|bytewax)_[a-z0-9_]+\b")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", re.M)
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus query can use: the sample names, and for every declared family
    (a labelled metric with no child yet has no sample) its names by type."""
    names = set(SAMPLE.findall(exposition))
    for family, kind in TYPE_LINE.findall(exposition):
        names.add(family)
        names.update(family + suffix for suffix in SUFFIXES.get(kind, ()))
    return names


def panel_expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))  # rows may hold panels
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def declared_in_source(prefix: str) -> set[str]:
    """Metric names with this prefix declared anywhere in the packages (for processes this test does
    not start)."""
    names: set[str] = set()
    for path in REPO.glob("*/**/*.py"):
        if path.parts[len(REPO.parts)] not in {"tests", ".venv", "benchmarks"}:
            names.update(re.findall(rf'"({prefix}[a-z0-9_]+)"', path.read_text(errors="replace")))
    return names


def test_every_dashboard_metric_is_exported(stack: Stack) -> None:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    expressions = list(panel_expressions(dashboard))
    assert len({title for title, _ in expressions}) >= 10
    if not stack.played:
        stack.play()
    assert stack.settings.database_url
    wait_until(lambda: open_alert_ids(stack.settings.database_url), 60, what="the stream's alerts")

    with httpx.Client(timeout=10) as client:
        sources = {
            "gateway": f"{stack.gateway_url}/metrics",
            "dataflow": stack.dataflow_metrics_url,
            "console": f"{stack.console_url}/metrics",
        }
        exported = {name: exported_names(client.get(url).text) for name, url in sources.items()}
    everything = set().union(*exported.values())
    # What the stream must have produced as samples, not only declared.
    dataflow = httpx.get(stack.dataflow_metrics_url, timeout=10).text
    for series in (
        'worktool_dataflow_alerts_total{alert_type="user_complaint"',
        'worktool_dataflow_commands_total{status="pending"}',
        'worktool_dataflow_messages_classified_total{decided_by="model"}',
        'worktool_dataflow_robot_online{robot_id="wt_day_01"} 1.0',
    ):
        assert series in dataflow, f"{series} not in the dataflow's metrics:\n{dataflow[:3000]}"

    dispatcher_declared = declared_in_source("worktool_dispatcher_")
    missing, pending = [], []
    for title, expr in expressions:
        names = METRIC.findall(expr)
        assert names, f"panel {title!r}: {expr!r} names no metric of ours"
        for name in names:
            if name.startswith("worktool_dispatcher_") and not dispatcher_declared:
                pending.append(name)  # the dispatcher is not in this tree yet
            elif name.startswith("worktool_dispatcher_"):
                if name not in dispatcher_declared and not any(
                    name == d + s
                    for d in dispatcher_declared
                    for s in ("_total", "_bucket", "_sum", "_count")
                ):
                    missing.append(f"{title}: {name}")
            elif name not in everything:
                missing.append(f"{title}: {name}")
    assert not missing, "dashboard metrics that no /metrics endpoint exports:\n" + "\n".join(missing)
    if pending:
        warnings.warn(
            f"dispatcher metrics not checked (no dispatcher yet): {sorted(set(pending))}", stacklevel=1
        )


def test_the_dashboard_is_provisioned_by_compose() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    provider = (REPO / "deploy" / "grafana" / "provisioning" / "dashboards" / "worktool.yml").read_text()
    path = re.search(r"path:\s*(\S+)", provider)
    assert path, provider
    assert f"./deploy/grafana/dashboards:{path.group(1)}:ro" in compose
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    assert dashboard["uid"] and dashboard["title"]
    datasources = {
        t.get("datasource", {}).get("uid") for p in dashboard["panels"] for t in p.get("targets", [])
    }
    assert datasources == {"prometheus"}  # the provisioned datasource's uid
