"""The conversation part of the sessions step (docs/rules.md §3, §5): who is handling a session (the
staff-active window, handover, paused replies), the user's wait for staff, the replies and notices
planned and withdrawn, and the messages that need intervention. Pure; the clock is the step's.

Session status: `auto` (automatic replies allowed), `staff` (a staff or assistant message less than
`staff_window.minutes` ago: no automatic reply), `handover` ([转人工]: staff own the session until
[恢复回复] or [已解决]). `ai_paused` ([暂停回复] / [恢复回复]) is independent of the status: paused means
no automatic reply in any status.

    staff or assistant message -> pending replies withdrawn; inline command applied; the window opens
                                  or moves on (`window` after the last staff message); the wait ends
    user message, staff handling -> the oldest unanswered one starts the wait (`waiting` minutes:
                                  user_waiting_too_long and the staff_no_reply alert)
    user question (need_reply)  -> the owner's open question (`asks`, operators/quality.py)
    staff or assistant text     -> answering an open question within the reply window (or typed
                                  staff_reply_user): scored, staff_low_reply_quality below the threshold
    any message                 -> a session_state event if status, pause or window changed; a reply
                                  planned (ReplyScheduled, a SEND_DUE timer) or skipped
    SEND_DUE                    -> the reply's robot chosen again, the command written
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from operators.alerts import Alert, AlertRules, Out, Trigger, command_cause
from operators.quality import Ask, QualityVerdict, ReplyScorer, note_ask, take_ask
from operators.replies import PlannedSend, ReplyPlanner, Skip
from operators.rules import TEXT_KINDS
from operators.timers import ShardClock, Timer
from worktool.config import BusinessConfig
from worktool.events import (
    CommandCreated,
    InterventionNeeded,
    ReplyScheduled,
    ReplySkipped,
    ReplyWithdrawn,
    SessionState,
    StaffWindowClosed,
    StaffWindowOpened,
    construct,
)
from worktool.models import Classification, CommandRecord, Message

WINDOW_END = "staff_window_end"
USER_WAITING = "user_waiting"
MAX_LATER_WAITS = 16  # later unanswered messages with a wait of their own, per session
SEND_DUE = "send_due"  # a reply or a notice whose delay has passed

# When one message needs intervention for several reasons, the message row keeps the most urgent.
INTERVENTION_ORDER = (
    "complaint",
    "user_low_satisfaction",
    "user_negative_after_staff",
    "staff_low_reply_quality",
)


class Wait(NamedTuple):
    """The user's oldest message unanswered by staff in a staff-handled session."""

    timer: int
    message_id: str
    user: str


# What decides whether the robots may answer: (status auto|staff|handover, ai_paused, staff_until); a
# change is a session_state event. A plain tuple, unpacked where read: it is taken twice per message,
# and a NamedTuple costs five times as much to build.
ReplyState = tuple[str, bool, datetime | None]


@dataclass(slots=True)
class Conversation:
    status: str = "auto"
    ai_paused: bool = False
    staff_until: datetime | None = None  # the end of the staff-active window, while it is open
    staff_since: datetime | None = None
    window_timer: int | None = None
    last_sender_type: str | None = None  # of the latest message not sent by one of our robots
    waiting: Wait | None = None
    # Later unanswered user messages of a staff-handled session, each with its own wait: when one runs
    # out it repeats staff_no_reply (§4: a repeat within 30 min of the previous trigger escalates).
    later_waits: list[Wait] = field(default_factory=list)
    replies: dict[str, int] = field(default_factory=dict)  # message -> timer of its reply not sent yet
    asks: dict[str, Ask] = field(default_factory=dict)  # owner -> their open question (operators/quality.py)

    def reply_state(self) -> ReplyState:
        return self.status, self.ai_paused, self.staff_until

    def snapshot_into(self, data: dict[str, Any]) -> None:
        """Sparse plain data (a field at its default is left out), in the sessions step's v4 layout."""
        if self.status != "auto":
            data["status"] = self.status
        if self.ai_paused:
            data["ai_paused"] = True
        if self.staff_until is not None:
            data["staff_until"] = self.staff_until
        if self.staff_since is not None:
            data["staff_since"] = self.staff_since
        if self.window_timer is not None:
            data["window_timer"] = self.window_timer
        if self.last_sender_type is not None:
            data["last_sender_type"] = self.last_sender_type
        if self.waiting is not None:
            data["waiting"] = tuple(self.waiting)
        if self.later_waits:
            data["later_waits"] = [tuple(w) for w in self.later_waits]
        if self.replies:
            data["replies"] = dict(self.replies)
        if self.asks:
            data["asks"] = dict(self.asks)

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Conversation:
        waiting = data.get("waiting")
        return cls(
            status=data.get("status", "auto"),
            ai_paused=data.get("ai_paused", False),
            staff_until=data.get("staff_until"),
            staff_since=data.get("staff_since"),
            window_timer=data.get("window_timer"),
            last_sender_type=data.get("last_sender_type"),
            waiting=Wait(*waiting) if waiting else None,
            later_waits=[Wait(*w) for w in data.get("later_waits", ())],
            replies=dict(data.get("replies", ())),
            asks=dict(data.get("asks", ())),
        )


def _change_name(before: ReplyState, after: ReplyState) -> str:
    status_before, paused_before, until_before = before
    status, paused, _ = after
    if paused_before != paused:
        return "replies_paused" if paused else "replies_resumed"
    if status_before != status and "handover" in (status_before, status):
        return "handover" if status == "handover" else "handover_ended"
    if until_before is None:
        return "staff_window_opened"
    return "staff_window_extended"


class ConversationRules:
    """The conversation's rules over its `Conversation`; the step's clock is passed in."""

    def __init__(
        self,
        config: BusinessConfig,
        alerts: AlertRules,
        replies: ReplyPlanner,
        owners_mentioned: Callable[[Message], list[str]],
    ) -> None:
        self.alerts = alerts
        self.planner = replies
        self.owners_mentioned = owners_mentioned
        self.quality = ReplyScorer(config.intervention)
        self.reply_window = timedelta(minutes=config.intervention.reply_window_minutes)
        self.window = timedelta(minutes=config.staff_window.minutes)
        self.waiting = timedelta(minutes=config.intervention.user_waiting_minutes)
        self.negative = config.intervention.negative_sentiment

    # -- staff ---------------------------------------------------------------------------------

    @staticmethod
    def staff_command(talk: Conversation, command: str | None) -> None:
        """[暂停回复] / [恢复回复] / [转人工] / [已解决], as far as the conversation goes."""
        if command == "pause_replies":
            talk.ai_paused = True  # (pending replies were withdrawn by the staff message itself)
        elif command == "handover":
            talk.status = "handover"
        elif command in ("resume_replies", "solved"):
            if command == "resume_replies":
                talk.ai_paused = False
            if talk.status == "handover":
                talk.status = "staff"

    def staff_window(self, talk: Conversation, clock: ShardClock, m: Message) -> list[Out]:
        """The staff-active window opens, or moves on."""
        at, sid = m.received_at, m.session_id
        opened = talk.staff_until is None
        if talk.window_timer is not None:
            clock.cancel(talk.window_timer)
        talk.staff_until = at + self.window
        talk.window_timer = clock.schedule(talk.staff_until, sid, WINDOW_END)
        if not opened:
            return []
        talk.staff_since = at
        if talk.status == "auto":
            talk.status = "staff"
        data = StaffWindowOpened.make(
            until=talk.staff_until, staff_name=m.sender_name, message_id=m.message_id
        )
        return [data.at(at, sid, m.robot_id)]

    @staticmethod
    def staff_answered(talk: Conversation, clock: ShardClock) -> None:
        """Staff spoke: nobody is waiting any more."""
        if talk.waiting is not None:
            clock.cancel(talk.waiting.timer)
            talk.waiting = None
        for wait in talk.later_waits:
            clock.cancel(wait.timer)
        talk.later_waits.clear()

    def answer_quality(self, talk: Conversation, m: Message, c: Classification) -> QualityVerdict | None:
        """An owner's question is kept open; a staff or assistant text answering one within the reply
        window (or typed staff_reply_user) is scored: the LLM's score on the classification, else the
        rules' (docs/rules.md §3, situation 2). None: nothing to score."""
        text = m.text or m.raw_text
        if c.sender_type == "user":
            if c.need_reply and text.strip():
                note_ask(talk.asks, m.sender_name, text, m.received_at, self.reply_window)
            return None
        if c.sender_type not in ("staff", "assistant"):
            return None
        answered = take_ask(talk.asks, m.mentions, m.received_at, self.reply_window)
        if m.text_type not in TEXT_KINDS or not text.strip() or c.staff_command is not None:
            return None  # a picture, a file or an inline command: not a reply to score
        if answered is None and c.message_type != "staff_reply_user":
            return None
        if c.reply_quality is not None:
            return QualityVerdict(c.reply_quality, "llm", None)
        return self.quality.score(text, answered[1][1] if answered else "")

    def reply_quality(self, m: Message, verdict: QualityVerdict | None) -> list[Out]:
        if verdict is not None and self.quality.is_low(verdict):
            return self.intervention(m, "staff_low_reply_quality", m.sender_name)
        return []

    # -- users ---------------------------------------------------------------------------------

    def user_waits(self, talk: Conversation, clock: ShardClock, m: Message) -> None:
        """Staff are handling the session: the oldest unanswered user message starts the wait; a later
        one, while it runs, a wait of its own (at most MAX_LATER_WAITS)."""
        if talk.status == "auto":
            return
        if talk.waiting is None:
            timer = clock.schedule(m.received_at + self.waiting, m.session_id, USER_WAITING, m.message_id)
            talk.waiting = Wait(timer, m.message_id, m.sender_name)
        elif len(talk.later_waits) < MAX_LATER_WAITS:
            timer = clock.schedule(m.received_at + self.waiting, m.session_id, USER_WAITING, m.message_id)
            talk.later_waits.append(Wait(timer, m.message_id, m.sender_name))

    def user_interventions(
        self, talk: Conversation, m: Message, c: Classification, fell_low: bool
    ) -> list[Out]:
        """Three of the four situations (the fourth, waiting too long, is a timer); a message needing
        intervention for several reasons keeps the most urgent."""
        reasons = []
        if c.message_type == "chat_complaint":
            reasons.append("complaint")
        if fell_low:
            reasons.append("user_low_satisfaction")
        if (c.sentiment or 0) <= self.negative and talk.last_sender_type in ("staff", "assistant"):
            reasons.append("user_negative_after_staff")
        if not reasons:
            return []
        return self.intervention(m, min(reasons, key=INTERVENTION_ORDER.index), m.sender_name)

    @staticmethod
    def intervention(m: Message, reason: str, user: str | None) -> list[Out]:
        data = InterventionNeeded.make(message_id=m.message_id, reason=reason, user_name=user)
        return [data.at(m.received_at, m.session_id, m.robot_id)]

    # -- session state -------------------------------------------------------------------------

    @staticmethod
    def state_changed(
        talk: Conversation, sid: str, at: datetime, before: ReplyState, change: str
    ) -> list[Out]:
        after = talk.reply_state()
        if after == before:
            return []
        if change == "message":
            change = _change_name(before, after)
        data = SessionState.make(
            status=talk.status, ai_paused=talk.ai_paused, staff_active_until=talk.staff_until, change=change
        )
        return [data.at(at, sid)]

    # -- replies and notices (docs/rules.md §5) ------------------------------------------------

    def plan_sends(
        self, talk: Conversation, clock: ShardClock, robots: set[str], m: Message, c: Classification,
        mentioned: list[str],
    ) -> list[Out]:  # fmt: skip
        planner = self.planner
        if c.sender_type == "user" and c.message_type == "chat_after_sales":
            notice = planner.plan_notice(m)  # to staff, through the notify robot; never withdrawn
            clock.schedule(notice.due, m.session_id, SEND_DUE, notice.payload())
        if not planner.wants_reply(m, c, mentioned):
            return []
        # The owners @-ed matter only to an operator's harsh words (soothed): not asked for a user's message.
        owners = self.owners_mentioned(m) if c.sender_type == "operator" else []
        plan = planner.plan_reply(m, c, robots, owners, talk.ai_paused, talk.status != "auto")
        if isinstance(plan, Skip):
            return [
                ReplySkipped.make(message_id=m.message_id, reason=plan.reason).at(m.received_at, m.session_id)
            ]
        talk.replies[m.message_id] = clock.schedule(plan.due, m.session_id, SEND_DUE, plan.payload())
        data = ReplyScheduled.make(
            message_id=m.message_id,
            robot_id=plan.robot_id,
            target=plan.target,
            delay_s=plan.delay_s,
            due_time=plan.due,
            persona=plan.persona,
            template_id=plan.template_id,
        )
        return [data.at(m.received_at, m.session_id, plan.robot_id)]

    @staticmethod
    def withdraw_replies(talk: Conversation, clock: ShardClock, m: Message, reason: str) -> list[Out]:
        out: list[Out] = []
        for message_id, timer in talk.replies.items():
            if clock.cancel(timer):
                data = ReplyWithdrawn.make(message_id=message_id, reason=reason)
                out.append(data.at(m.received_at, m.session_id))
        talk.replies.clear()
        return out

    # -- timers --------------------------------------------------------------------------------

    def window_end(self, talk: Conversation, timer: Timer) -> list[Out]:
        """The window closes `window` after the last staff message (an older timer was cancelled)."""
        if talk.staff_until != timer.due:
            return []
        before = talk.reply_state()
        opened = talk.staff_since
        talk.staff_until = talk.staff_since = None
        talk.window_timer = None
        if talk.status == "staff":
            talk.status = "auto"
        out: list[Out] = [StaffWindowClosed.make(opened_at=opened).at(timer.due, timer.key)]
        return out + self.state_changed(talk, timer.key, timer.due, before, "staff_window_closed")

    def user_waited(
        self, talk: Conversation, alerts: dict[str, Alert], clock: ShardClock, timer: Timer
    ) -> list[Out]:
        """No staff message for `waiting` after the user's: intervention, and the staff_no_reply alert
        (a repeat of it for a later message's wait)."""
        if talk.waiting is not None and talk.waiting.timer == timer.seq:
            wait, talk.waiting = talk.waiting, None
        else:
            later = next((w for w in talk.later_waits if w.timer == timer.seq), None)
            if later is None:
                return []
            wait = later
            talk.later_waits.remove(later)
        event = InterventionNeeded.make(
            message_id=wait.message_id, reason="user_waiting_too_long", user_name=wait.user
        )
        trigger = Trigger(alert_type="staff_no_reply", subject=timer.key, at=timer.due, user_name=wait.user,
                          session_id=timer.key, message_id=wait.message_id)  # fmt: skip
        return [event.at(timer.due, timer.key), *self.alerts.trigger(alerts, clock, trigger)]

    def send_due(self, talk: Conversation | None, robots: set[str], timer: Timer) -> list[Out]:
        plan = PlannedSend.from_payload(timer.payload)
        if plan.cause == "reply_scheduled":
            if talk is None or talk.replies.pop(plan.message_id, None) != timer.seq:
                return []
            # Chosen again now that every robot's report of the message has arrived (docs/rules.md §5).
            robot = self.planner.robot_for(robots, plan.reporting, plan.asked_at or timer.due)
            if robot is None:
                skip = ReplySkipped.make(message_id=plan.message_id, reason="no_reply_robot_in_group")
                return [skip.at(timer.due, timer.key)]
            if robot != plan.robot_id:
                plan = plan._replace(robot_id=robot)
        cause = command_cause(plan.cause, plan.message_id, None)
        command = construct(CommandRecord,
            command_id=plan.command_id, channel="wecom", robot_id=plan.robot_id, target=plan.target,
            content=plan.content, at_list=list(plan.at_list), due_time=plan.due, cause=cause, reply=None,
        )  # fmt: skip
        created = CommandCreated.make(
            command_id=plan.command_id, channel="wecom", robot_id=plan.robot_id, target=plan.target,
            content=plan.content, at_list=list(plan.at_list), due_time=plan.due, cause_event=plan.cause,
            cause_id=plan.message_id, persona=plan.persona, template_id=plan.template_id,
        )  # fmt: skip
        return [command, created.at(timer.due, timer.key, plan.robot_id)]
