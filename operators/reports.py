"""The after-sales day (docs/rules.md §7): what the desk saw between two local midnights, as the
`daily_report` event and its Chinese summary. Pure: the desk (operators/desk.py) feeds it in event-time
order and asks for the report when its watermark passes 24:00.

Definitions (the report's fields, worktool/events.py DailyReport):
- completion rate: of the tasks opened that day, the share completed by 24:00;
- handling time (average, p90): opening to completion, over the tasks completed that day;
- SLA attainment: of the tasks completed that day, the share completed within their type's target;
- cooperation: owners' answers to staff @s that day (responded, refused) and reminders (timeout);
- funnel: needs (after-sales requests, repeats included) -> tasks opened -> assigned -> completed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from operators.alerts import LEVEL_NAMES, TYPE_NAMES
from worktool.config import BusinessConfig
from worktool.events import AlertCount, DailyReport, StaffDay


@dataclass(slots=True)
class DayLedger:
    """Counters of one local day."""

    needs: int = 0
    opened: list[str] = field(default_factory=list)  # task ids opened that day
    assigned: set[str] = field(default_factory=set)  # task ids assigned that day (first time or again)
    completed: dict[str, float] = field(default_factory=dict)  # task id -> handling minutes
    within_target: int = 0
    cancelled: int = 0
    cooperation: dict[str, int] = field(default_factory=lambda: {"responded": 0, "refused": 0, "timeout": 0})
    staff: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts: dict[str, tuple[str, int, bool]] = field(default_factory=dict)  # id -> (type, level, escalated)

    def person(self, name: str) -> dict[str, int]:
        row = self.staff.get(name)
        if row is None:
            row = self.staff[name] = dict.fromkeys(
                ("assigned", "completed", "reminders", "not_followed_up", "unfinished"), 0
            )
        return row

    def is_empty(self) -> bool:
        return self == DayLedger()

    def plain(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in DayLedger.__slots__}  # type: ignore[attr-defined]


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile by the nearest-rank method (p90 of ten values is the ninth smallest)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _minutes(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def build_report(
    ledger: DayLedger,
    day: str,
    config: BusinessConfig,
    open_tasks: list[tuple[str, datetime, str | None]],  # (task type, opened at, assignee) at 24:00
    midnight: datetime,
) -> DailyReport:
    targets = {t.code: timedelta(minutes=t.target_minutes) for t in config.after_sales.task_types}
    opened = ledger.opened
    done_of_opened = sum(1 for tid in opened if tid in ledger.completed)
    handling = list(ledger.completed.values())
    holding: dict[str, int] = {}
    for _, _, assignee in open_tasks:
        if assignee:
            holding[assignee] = holding.get(assignee, 0) + 1
    overdue = sum(1 for kind, at, _ in open_tasks if at + targets.get(kind, timedelta(hours=4)) < midnight)
    names = sorted(
        set(ledger.staff) | set(holding),
        key=lambda n: (n not in {m.name for m in config.after_sales.desk}, n),
    )
    staff = [
        StaffDay(name=n, **ledger.staff.get(n, {}), open_at_end=holding.get(n, 0))  # type: ignore[arg-type]
        for n in names
    ]
    counts: dict[tuple[str, int], list[int]] = {}
    for alert_type, level, escalated in ledger.alerts.values():
        c = counts.setdefault((alert_type, level), [0, 0])
        c[0] += 1
        c[1] += int(escalated)
    alerts = [
        AlertCount(alert_type=t, level=lv, raised=n, escalated=e)
        for (t, lv), (n, e) in sorted(counts.items())
    ]
    funnel = {"needs": ledger.needs, "opened": len(opened), "assigned": len(ledger.assigned),
              "completed": len(ledger.completed)}  # fmt: skip
    report = DailyReport.make(
        report_date=day,
        timezone=config.timezone,
        tasks_opened=len(opened),
        tasks_completed=len(ledger.completed),
        tasks_cancelled=ledger.cancelled,
        opened_and_completed=done_of_opened,
        completion_rate=_ratio(done_of_opened, len(opened)),
        avg_handling_minutes=_minutes(sum(handling) / len(handling) if handling else None),
        p90_handling_minutes=_minutes(percentile(handling, 0.9)),
        sla_attained=_ratio(ledger.within_target, len(ledger.completed)),
        open_at_end=len(open_tasks),
        overdue_at_end=overdue,
        cooperation=dict(ledger.cooperation),
        staff=staff,
        alerts=alerts,
        funnel=funnel,
        summary="",
    )
    report.summary = summary(report)
    return report


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _mins(value: float | None) -> str:
    return "—" if value is None else f"{value:g} 分钟"


def summary(r: DailyReport) -> str:
    """The WeCom (and Feishu) text of the report, in Chinese."""
    lines = [
        f"【售后日报】{r.report_date}",
        f"任务：新建 {r.tasks_opened}，完成 {r.tasks_completed}，取消 {r.tasks_cancelled}；"
        f"当日完成率 {_percent(r.completion_rate)}；未完成 {r.open_at_end}（超时 {r.overdue_at_end}）",
        f"处理时长：平均 {_mins(r.avg_handling_minutes)}，P90 {_mins(r.p90_handling_minutes)}；"
        f"SLA 达成 {_percent(r.sla_attained)}",
        f"用户配合：响应 {r.cooperation.get('responded', 0)}，拒绝 {r.cooperation.get('refused', 0)}，"
        f"未回应 {r.cooperation.get('timeout', 0)}",
        f"需求漏斗：需求 {r.funnel['needs']} → 建任务 {r.funnel['opened']} → 分配 {r.funnel['assigned']} "
        f"→ 完成 {r.funnel['completed']}",
    ]
    if r.alerts:
        parts = [
            f"{TYPE_NAMES.get(a.alert_type, a.alert_type)}·{LEVEL_NAMES.get(a.level, a.level)} {a.raised}"
            + (f"（升级 {a.escalated}）" if a.escalated else "")
            for a in r.alerts
        ]
        lines.append("告警：" + "，".join(parts))
    for s in r.staff:
        lines.append(
            f"{s.name}：分配 {s.assigned}，完成 {s.completed}，未完成 {s.open_at_end}，提醒 {s.reminders}，"
            f"未跟进 {s.not_followed_up}，超时未完成 {s.unfinished}"
        )
    return "\n".join(lines)


__all__ = ["DayLedger", "build_report", "percentile", "summary"]
