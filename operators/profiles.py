"""Customer profiles (docs/rules.md §7.6): one per owner, a display name within its conversation,
folded from the events the sessions step has just produced for that conversation. Pure; the clock is
the sessions step's, passed in.

What a profile counts, and from which event:

    message_classified (the owner's)    messages by type, first/last seen, rolling satisfaction (its
                                        trend over the last few scores), a need (chat_after_sales,
                                        chat_private_operation); the owner now waits for an answer
    message_classified (staff, an       the waiting owners are answered: a response time each
    assistant or our robot)
    task_created / task_updated         a task opened (and its type) / the same need again
    task_status completed | cancelled   the task closed
    user_response / task_reminder       cooperation: responded, refused / timeout (silent after a staff
                                        @ until the assignee was reminded, as the daily report counts it)
    alert_raised / _escalated /         alerts raised by type; the open ones with their level
    _retriggered / _cancelled

Then `customer_updated` when the profile's standing moved (`standing`: its health score and band, the
funnel, open tasks and alerts, cooperation, the satisfaction trend; a message or a response time that
moves none of them only updates the counts, which ride along with the next event), throttled in event
time: at once if the profile's last one is at least `after_sales.profiles.update_minutes` old, else once
when that interval is over (a timer), with what the profile is then. Replays give the same events: only
event times and the shard's order decide.

The health score (0-100) and its band are `health()`; the formula is in docs/rules.md §7.6.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any

from operators.timers import ShardClock, Timer
from worktool.config import BusinessConfig
from worktool.events import EVENT_TYPES, CustomerUpdated, MonitorEvent, OpenTask, construct_from

PROFILE_DUE = "profile_due"  # the timer of a throttled customer_updated (payload: the owner's name)
NEEDS = frozenset(("chat_after_sales", "chat_private_operation"))  # the message types that are a need
ANSWERING = frozenset(("staff", "assistant", "robot"))  # a message of these answers the waiting owners
_TREND_STEP = 0.05  # a move of the satisfaction score smaller than this is "flat"
_RESPONSES_KEPT = 20  # response times averaged (the latest)
_ALERT_EVENTS = frozenset(("alert_raised", "alert_escalated", "alert_retriggered", "alert_cancelled"))
_EVENTS = frozenset(
    (
        "message_classified",
        "task_created",
        "task_updated",
        "task_status",
        "user_response",
        "task_reminder",
        *_ALERT_EVENTS,
    )
)
# Whether a value's type is folded, by type: a typed envelope's event is fixed by its type, so most items
# are sorted by one dict lookup (`_folds`); None: a plain MonitorEvent, read by its `event`.
_FOLDED_TYPES: dict[type, bool | None] = {t: name in _EVENTS for name, t in EVENT_TYPES.items()}
_UNSEEN = object()


def _folds(ev: Any) -> bool:
    folds = _FOLDED_TYPES.get(type(ev), _UNSEEN)
    if folds is _UNSEEN:  # a command, a tick, ...: learnt once per type
        folds = _FOLDED_TYPES[type(ev)] = None if isinstance(ev, MonitorEvent) else False
    return ev.event in _EVENTS if folds is None else folds  # type: ignore[return-value]


@dataclass(slots=True)
class Profile:
    """One owner in one conversation. Fields most often set come first: a snapshot row leaves out the
    trailing ones still at their defaults."""

    first_at: datetime
    last_at: datetime  # their latest message
    group_name: str | None = None
    messages: dict[str, int] = field(default_factory=dict)  # by message type
    satisfaction: float | None = None
    scores: list[float] = field(default_factory=list)  # the latest scores, oldest first (the trend)
    waiting_since: datetime | None = None  # their oldest message no one answered yet
    emitted_at: datetime | None = None  # event time of the latest customer_updated
    standing: tuple[Any, ...] | None = None  # `ProfileRules.standing` at the latest customer_updated
    due: int | None = None  # the pending PROFILE_DUE timer (changes since the latest event)
    responses: list[float] = field(default_factory=list)  # the latest response times, minutes
    needs: int = 0  # after-sales or private-operation messages (repeats included)
    opened: int = 0  # tasks opened for them
    completed: int = 0
    cancelled: int = 0
    tasks: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # open: id -> (type, opened_at)
    alerts: dict[str, int] = field(default_factory=dict)  # raised, by type
    open_alerts: dict[str, int] = field(default_factory=dict)  # alert id -> level
    responded: int = 0
    refused: int = 0
    timeouts: int = 0

    def row(self) -> tuple[Any, ...]:
        row = list(_values(self))  # one C call for the fields
        while len(row) > 2 and _is_default(row[-1], _DEFAULTS[len(row) - 1]):
            row.pop()
        return tuple(row)

    @classmethod
    def from_row(cls, row: tuple[Any, ...] | list[Any]) -> Profile:
        return cls(*row)


_FIELDS = tuple(Profile.__dataclass_fields__)
_values = attrgetter(*_FIELDS)
_DEFAULTS = tuple(
    f.default_factory() if callable(f.default_factory) else f.default
    for f in Profile.__dataclass_fields__.values()
)


def _is_default(value: Any, default: Any) -> bool:
    return value is None if default is None else type(value) is type(default) and value == default


@dataclass(slots=True)
class ProfileBook:
    """A conversation's owners, by display name."""

    owners: dict[str, Profile] = field(default_factory=dict)
    task_owner: dict[str, str] = field(default_factory=dict)  # open task id -> owner
    alert_owner: dict[str, str] = field(default_factory=dict)  # open alert id -> owner

    def snapshot_into(self, data: dict[str, Any]) -> None:
        if self.owners:
            data["profiles"] = {name: p.row() for name, p in self.owners.items()}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ProfileBook:
        book = cls({name: Profile.from_row(row) for name, row in data.get("profiles", {}).items()})
        for name, p in book.owners.items():
            for task_id in p.tasks:
                book.task_owner[task_id] = name
            for alert_id in p.open_alerts:
                book.alert_owner[alert_id] = name
        return book


def _keep_latest(values: list[float], value: float, kept: int) -> None:
    """Append `value`, keeping the latest `kept` values: in place (a profile's lists are its own; a
    snapshot row is pickled at once)."""
    values.append(value)
    if len(values) > kept:
        del values[:-kept]


def trend(scores: list[float]) -> str | None:
    """up | down | flat over the kept scores; None before there are two."""
    if len(scores) < 2:
        return None
    move = scores[-1] - scores[0]
    return "up" if move > _TREND_STEP else "down" if move < -_TREND_STEP else "flat"


def cooperation_level(responded: int, refused: int, timeouts: int) -> str:
    asked = responded + refused + timeouts
    if not asked:
        return "unknown"
    share = responded / asked
    return "cooperative" if share >= 0.7 else "partial" if share >= 0.4 else "uncooperative"


class ProfileRules:
    def __init__(self, config: BusinessConfig, initial_satisfaction: float) -> None:
        c = config.after_sales.profiles
        self.every = timedelta(minutes=c.update_minutes)
        self.response_target = c.response_target_minutes
        self.kept_scores = c.trend_scores
        self.targets = {t.code: t.target_minutes for t in config.after_sales.task_types}
        self.initial = initial_satisfaction

    # -- folding the events --------------------------------------------------------------------

    def observe(
        self, book: ProfileBook, clock: ShardClock, session_id: str, at: datetime, events: list[Any]
    ) -> list[MonitorEvent]:
        """Fold the conversation's new events into its owners' profiles; `customer_updated` for those
        that changed and are due."""
        changed = self._fold(book, events)
        if not changed:  # nearly half the calls: the records' events touch no profile
            return []
        out: list[MonitorEvent] = []
        for name in changed:
            p = book.owners.get(name)
            if p is None:
                continue
            free = p.emitted_at is None or at - p.emitted_at >= self.every  # not throttled
            if not free and p.due is not None:
                continue  # its timer reads the standing when it fires (7 % of the changes: not read now)
            standing = self.standing(p, at)
            if p.standing is not None and p.standing == standing:
                continue  # only counts moved: they ride along with the next event
            if free:
                out.append(self._emit(book, clock, session_id, name, p, at, standing))
            else:
                p.due = clock.schedule(p.emitted_at + self.every, session_id, PROFILE_DUE, name)
        return out

    def _fold(self, book: ProfileBook, events: list[Any]) -> list[str]:
        """The owners whose profiles the events changed, in the order first changed."""
        changed: list[str] = []
        folded_types = _FOLDED_TYPES
        for ev in events:
            folds = folded_types.get(type(ev))  # inlined `_folds` for the known types: ~300 k events a day
            if folds is None:
                folds = _folds(ev)
            if folds:
                folded = self._fold_one(book, ev)
                if folded is None:
                    continue
                for name in (folded,) if type(folded) is str else folded:
                    if name not in changed:
                        changed.append(name)
        return changed

    def _fold_one(self, book: ProfileBook, ev: MonitorEvent) -> str | tuple[str, ...] | None:  # noqa: C901
        """The owner (or owners) whose profile the event changed."""
        d: Any = ev.data
        kind = ev.event
        if kind == "message_classified":
            return self._message(book, ev.event_time, d)
        if kind == "task_created":
            name = d.user_name
            p = book.owners.get(name) if name else None
            if p is None:
                return None
            p.opened += 1
            p.tasks[d.task_id] = (d.task_type, ev.event_time)
            book.task_owner[d.task_id] = name
            return name
        if kind == "task_status":
            if d.status not in ("completed", "cancelled"):
                return None
            name = book.task_owner.pop(d.task_id, None)
            p = book.owners.get(name) if name else None
            if p is None or p.tasks.pop(d.task_id, None) is None:
                return None
            if d.status == "completed":
                p.completed += 1
            else:
                p.cancelled += 1
            return name
        if kind in ("user_response", "task_reminder"):  # an answer to a staff @, or silence after it
            name = book.task_owner.get(d.task_id)
            p = book.owners.get(name) if name else None
            if p is None:
                return None
            answer = d.status if kind == "user_response" else "timeout"
            if answer == "responded":
                p.responded += 1
            elif answer == "refused":
                p.refused += 1
            else:
                p.timeouts += 1
            return name
        if kind == "task_updated":
            return book.task_owner.get(d.task_id)
        return self._alert(book, kind, d)

    def _message(self, book: ProfileBook, at: datetime, d: Any) -> str | tuple[str, ...] | None:
        sender = d.sender_type
        if sender in ANSWERING:
            answered = []
            for name, p in book.owners.items():
                if p.waiting_since is not None:
                    minutes = (at - p.waiting_since).total_seconds() / 60
                    _keep_latest(p.responses, round(minutes, 3), _RESPONSES_KEPT)
                    p.waiting_since = None
                    answered.append(name)
            return tuple(answered)
        if sender != "user" or not d.sender_name:
            return None
        name = d.sender_name
        p = book.owners.get(name)
        if p is None:
            p = book.owners[name] = Profile(first_at=at, last_at=at)
        if at > p.last_at:
            p.last_at = at
        if d.group_name:
            p.group_name = d.group_name
        message_type = d.message_type or "unknown"
        messages = p.messages
        messages[message_type] = messages.get(message_type, 0) + 1
        if message_type in NEEDS:
            p.needs += 1
        satisfaction = d.satisfaction
        if satisfaction is not None:
            p.satisfaction = satisfaction
            _keep_latest(p.scores, round(satisfaction, 4), self.kept_scores)
        if p.waiting_since is None:
            p.waiting_since = at
        return name

    def _alert(self, book: ProfileBook, kind: str, d: Any) -> str | None:
        alert = d.alert
        name = alert.user_name if kind != "alert_cancelled" else book.alert_owner.pop(d.alert_id, None)
        p = book.owners.get(name) if name else None
        if p is None:
            return None
        if kind == "alert_cancelled":
            p.open_alerts.pop(d.alert_id, None)
        elif kind == "alert_raised":
            p.alerts[d.alert_type] = p.alerts.get(d.alert_type, 0) + 1
            p.open_alerts[d.alert_id] = d.level
            book.alert_owner[d.alert_id] = name
        elif d.alert_id in p.open_alerts:  # escalated or retriggered: its level now
            p.open_alerts[d.alert_id] = alert.level
        else:
            return None
        return name

    # -- the throttled event -------------------------------------------------------------------

    def on_timer(self, book: ProfileBook, clock: ShardClock, timer: Timer) -> list[MonitorEvent]:
        p = book.owners.get(timer.payload)
        if p is None or p.due != timer.seq:
            return []
        standing = self.standing(p, timer.due)
        if p.standing == standing:  # back where the latest event left it
            p.due = None
            return []
        return [self._emit(book, clock, timer.key, timer.payload, p, timer.due, standing)]

    def standing(self, p: Profile, at: datetime) -> tuple[Any, ...]:
        """What makes a profile worth an event: its health, the funnel, its open tasks and alerts, the
        cooperation and the satisfaction trend (a message count or a response time alone does not)."""
        score, band = self.health(p, at)
        open_alerts = p.open_alerts
        alerts = tuple(sorted(open_alerts.items()) if len(open_alerts) > 1 else open_alerts.items())
        return (score, band, p.needs, p.opened, p.completed, p.cancelled, tuple(p.tasks), alerts,
                p.responded, p.refused, p.timeouts, trend(p.scores))  # fmt: skip

    def _emit(  # noqa: PLR0913
        self, book: ProfileBook, clock: ShardClock, session_id: str, name: str, p: Profile, at: datetime,
        standing: tuple[Any, ...],
    ) -> MonitorEvent:  # fmt: skip
        """`standing`: `self.standing(p, at)`, which the caller has just compared."""
        if p.due is not None:
            clock.cancel(p.due)
            p.due = None
        p.emitted_at = at
        p.standing = standing
        responses = p.responses
        responded, refused, timeouts = p.responded, p.refused, p.timeouts
        messages = p.messages
        # Every field given, in the model's order: construct_from keeps this dict as the model's own.
        data = construct_from(
            CustomerUpdated,
            {
                "user_name": name,
                "group_name": p.group_name,
                "first_seen_at": p.first_at,
                "last_message_at": p.last_at,
                "message_count": sum(messages.values()),
                "messages": dict(messages),
                "requirements": {
                    "needs": p.needs,
                    "opened": p.opened,
                    "completed": p.completed,
                    "cancelled": p.cancelled,
                },
                "open_tasks": [
                    construct_from(OpenTask, {"task_id": t, "task_type": tt, "opened_at": o})
                    for t, (tt, o) in p.tasks.items()
                ],
                "alerts": dict(p.alerts),
                "open_alerts": len(p.open_alerts),
                "satisfaction": p.satisfaction,
                "satisfaction_trend": standing[-1],  # trend(p.scores)
                "cooperation": {"responded": responded, "refused": refused, "timeout": timeouts},
                "cooperation_level": cooperation_level(responded, refused, timeouts),
                "responses": len(responses),
                "avg_response_minutes": round(sum(responses) / len(responses), 2) if responses else None,
                "waiting_since": p.waiting_since,
                "health_score": standing[0],
                "health_band": standing[1],
            },
        )
        return data.at(at, session_id)

    def health(self, p: Profile, at: datetime) -> tuple[int, str]:
        """(score 0-100, band): docs/rules.md §7.6."""
        s = self.initial if p.satisfaction is None else p.satisfaction
        responded = p.responded
        c = (responded + 1) / (responded + p.refused + p.timeouts + 1)
        a = min(1.0, sum(p.open_alerts.values()) / 4) if p.open_alerts else 0.0
        overdue = 0  # most profiles have no open task: no generator for them
        if p.tasks:
            targets = self.targets
            for task_type, opened_at in p.tasks.values():
                if (at - opened_at).total_seconds() / 60 > targets.get(task_type, 240):
                    overdue += 1
        t = (p.completed + 1) / (p.completed + p.cancelled + overdue + 1)
        r = 1.0
        responses = p.responses
        if responses:
            r = max(0.0, 1 - sum(responses) / len(responses) / self.response_target)
        score = int(100 * (0.35 * s + 0.2 * c + 0.2 * (1 - a) + 0.15 * t + 0.1 * r) + 0.5)  # half up
        return score, "healthy" if score >= 70 else "watch" if score >= 40 else "at_risk"
