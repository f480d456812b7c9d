"""When to reply, with what, through which robot, after how long (docs/rules.md §5). Pure.

A user message gets an automatic reply when one of our reply robots is @-mentioned, or when it is a
question or request to us (`need_reply`: the LLM's when one is configured, the rules' otherwise) of a
type that gets replies (classifier.reply_types). Staff, assistants and robots never get one; an
operator's harsh message may get a soothing reply to the owners it names. Nothing is decided while the
session's staff-active window is open, it is handed over to staff, or its replies are paused.

Robot: the reply robot of the current shift (day from `replies.day_starts`, night from
`replies.night_starts`, in the configured time zone) if it is known to be in the group (it has reported a
message there); else the reporting robot if it is a reply robot; else no reply, and a `reply_skipped`
event says why. Notices to staff go through the notify robot, never to owners; the monitor robot never
sends.

Delay: uniform within the scenario's configured range, drawn from a generator seeded by the message id,
so a replay draws the same delay. Scenarios: urgent (complaints), after_sales_notify (the notice to
staff), day/night_shift_complex (the types of `replies.complex_types`), day/night_shift_operation.

Persona: the replying robot's (operators/personas.py: its `persona`, else by its group and role); the
notice's is the notify robot's.

Text: `ReplyWriter` is the one interface (a `ReplyRequest` in: kind, message id, scenario, shift,
persona and the variables; a `Reply` out: the text, the template id and the persona). `CatalogueReplies`
(the default) draws one of the catalogue's templates for the kind (worktool/catalogue/templates.yaml):
of those whose personas, scenarios and shifts admit the case, the most specific (persona, then scenario,
then shift), one drawn seeded by the message id, so a replay draws the same and replies do not repeat
word for word; the persona's emoji policy and length limit apply to replies to owners (a variant that
fits is preferred; the last resort is cut). A kind with a template in the configuration
(`replies.templates`), or every kind with `replies.catalogue: false`, gets the configured template
(`TemplateReplies`, template id `config:<kind>`), as does a kind the catalogue has nothing for. Group
replies start with "@<asker> " and @ the asker through WorkTool's atList.
"""

from __future__ import annotations

import _random
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from operators.personas import select_persona
from worktool.catalogue import Catalogue, MessageTemplate, apply_emoji_policy, shipped_catalogue
from worktool.config import BusinessConfig
from worktool.models import Classification, Message

_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
NOTICE = "after_sales_notify"  # the notice to staff: the owner's words relayed, no persona policy


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    """What a reply is written for: the kind (a message type, or after_sales_notify), the case that picks
    the template, and the values of the message's variables."""

    kind: str
    message_id: str
    scenario: str
    shift: str
    persona: str
    user: str
    group: str
    text: str
    robot: str


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    template_id: str | None = None  # a catalogue id, or config:<kind> for a configured template
    persona: str | None = None


class ReplyWriter(Protocol):
    def compose(self, request: ReplyRequest) -> Reply: ...


class TemplateReplies:
    """Reply text from the configured templates, one per message type (and `after_sales_notify`)."""

    def __init__(self, templates: dict[str, str]) -> None:
        self.templates = templates
        self._parts: dict[str, list[str]] = {}  # template -> its split: text, variable, text, ...

    def write(self, kind: str, *, user: str, group: str, text: str, robot: str) -> str:
        template = self.templates.get(kind) or self.templates["chat_daily"]
        parts = self._parts.get(template)
        if parts is None:
            parts = self._parts[template] = _VARIABLE.split(template)
        if len(parts) == 1:
            return template
        values = {"user": user, "group": group, "text": text[:200], "robot": robot}
        out = parts[:]
        for i in range(1, len(parts), 2):  # the odd places are variable names (an unknown one: KeyError)
            out[i] = values[parts[i]]
        return "".join(out)

    def compose(self, request: ReplyRequest) -> Reply:
        kind = request.kind if request.kind in self.templates else "chat_daily"
        r = request
        text = self.write(kind, user=r.user, group=r.group, text=r.text, robot=r.robot)
        return Reply(text, f"config:{kind}", r.persona)


def _draw(message_id: str, kind: str, n: int) -> int:
    """Which of n variants, reproducibly: seeded by the message id (and the kind)."""
    digest = hashlib.blake2b(f"{message_id}\x1f{kind}\x1ftemplate".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


class CatalogueReplies:
    """Replies from the template catalogue, by kind, persona, scenario and shift (see the module doc)."""

    def __init__(self, config: BusinessConfig, catalogue: Catalogue | None = None) -> None:
        r = config.replies
        catalogue = catalogue or shipped_catalogue()
        self.configured = TemplateReplies(r.templates)
        self.enabled = r.catalogue
        self.overridden = r.configured_templates
        self.personas = config.personas.definitions
        self.values = {**catalogue.setting_defaults(), **r.variables, "day_starts": r.day_starts,
                       "night_starts": r.night_starts}  # fmt: skip
        self.by_kind: dict[str, list[MessageTemplate]] = {}
        for t in catalogue.templates:
            for kind in t.message_types:
                self.by_kind.setdefault(kind, []).append(t)
        self._parts = {t.id: t.parts for t in catalogue.templates}
        self._cases: dict[tuple[str, str, str, str], tuple[MessageTemplate, ...]] = {}

    def candidates(self, kind: str, persona: str, scenario: str, shift: str) -> tuple[MessageTemplate, ...]:
        """The most specific templates admitting the case (persona 4, scenario 2, shift 1), catalogue order."""
        key = (kind, persona, scenario, shift)
        found = self._cases.get(key)
        if found is not None:
            return found
        best: list[MessageTemplate] = []
        score = -1
        for t in self.by_kind.get(kind, ()):
            if (t.personas and persona not in t.personas) or (t.scenarios and scenario not in t.scenarios):
                continue
            if t.shifts and shift not in t.shifts:
                continue
            s = 4 * bool(t.personas) + 2 * bool(t.scenarios) + bool(t.shifts)
            if s > score:
                best, score = [t], s
            elif s == score:
                best.append(t)
        found = self._cases[key] = tuple(best)
        return found

    def render(self, template: MessageTemplate, values: dict[str, str]) -> str:
        parts = self._parts[template.id][:]
        for i in range(1, len(parts), 2):
            parts[i] = values[parts[i]]
        return "".join(parts)

    def compose(self, request: ReplyRequest) -> Reply:
        r = request
        if not self.enabled or r.kind in self.overridden:
            return self.configured.compose(r)
        options = self.candidates(r.kind, r.persona, r.scenario, r.shift)
        if not options:
            return self.configured.compose(r)
        values = {**self.values, "user": r.user, "group": r.group, "text": r.text[:200], "robot": r.robot}
        start = _draw(r.message_id, r.kind, len(options))
        persona = self.personas.get(r.persona)
        if persona is None or r.kind == NOTICE:
            chosen = options[start]
            return Reply(self.render(chosen, values), chosen.id, r.persona)
        first: tuple[MessageTemplate, str] | None = None
        for i in range(len(options)):  # the drawn variant, else the next one within the length limit
            t = options[(start + i) % len(options)]
            text = apply_emoji_policy(self.render(t, values), persona.emoji)
            if len(text) <= persona.max_reply_chars:
                return Reply(text, t.id, r.persona)
            if first is None:
                first = (t, text)
        assert first is not None
        t, text = first
        return Reply(text[: persona.max_reply_chars - 1] + "…", t.id, r.persona)


class PlannedSend(NamedTuple):
    """A reply or a notice, decided now and sent at `due`. A named tuple: built for every reply and notice
    planned and again when it is due, at a fraction of a frozen dataclass's cost."""

    message_id: str
    command_id: str
    robot_id: str | None
    target: str
    content: str
    at_list: tuple[str, ...]
    due: datetime
    delay_s: float
    cause: str  # reply_scheduled | after_sales_notify
    reporting: str = ""  # the robot that reported the message (a reply's fallback sender)
    asked_at: datetime | None = None  # the message's event time (its shift picks the reply robot)
    persona: str | None = None  # the persona the text was written with
    template_id: str | None = None  # the template it was written from

    def payload(self) -> tuple:
        """Plain data for a timer (part of the snapshot)."""
        return (self.message_id, self.command_id, self.robot_id, self.target, self.content, list(self.at_list),
                self.due, self.delay_s, self.cause, self.reporting, self.asked_at, self.persona,
                self.template_id)  # fmt: skip

    @classmethod
    def from_payload(cls, data: tuple | list) -> PlannedSend:
        """Also a payload of the code before personas (11 items: no persona, no template id)."""
        message_id, command_id, robot_id, target, content, at_list, due, delay_s, cause, reporting, asked = (
            data[:11]
        )
        persona, template_id = data[11:13] if len(data) >= 13 else (None, None)
        return cls(message_id, command_id, robot_id, target, content, tuple(at_list), due, delay_s, cause,
                   reporting, asked, persona, template_id)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Skip:
    message_id: str
    reason: str


def _command_id(message_id: str, purpose: str) -> str:
    return "cmd_" + hashlib.blake2b(f"{message_id}\x1f{purpose}".encode(), digest_size=10).hexdigest()


class ReplyPlanner:
    def __init__(self, config: BusinessConfig, writer: ReplyWriter | None = None) -> None:
        r = config.replies
        self.c = r
        self.zone = ZoneInfo(config.timezone)
        self.day_starts, self.night_starts = r.clock("day"), r.clock("night")
        self.writer: ReplyWriter = writer or CatalogueReplies(config)
        self.reply_types = frozenset(config.classifier.reply_types)
        self.complex_types = frozenset(r.complex_types)
        self.by_role: dict[str, list[str]] = {}
        for robot in config.robots:
            self.by_role.setdefault(robot.role, []).append(robot.robot_id)
        self.reply_robots = frozenset(self.by_role.get("reply_day", []) + self.by_role.get("reply_night", []))
        self.names = {robot.robot_id: robot.name for robot in config.robots}
        self.personas = {robot.robot_id: select_persona(robot, config.personas) for robot in config.robots}
        self.unlisted_persona = select_persona(None, config.personas)
        notify = self.by_role.get("notify", [])
        self.notify_robot = notify[0] if notify else None
        self.staff_target = config.alerts.notifications.staff_target
        self._rng = _random.Random()  # reseeded per draw (cheaper than a new generator each time)
        self._shift_at: tuple[datetime, str] | None = (
            None  # the latest shift asked (asked 2-3 times a message)
        )

    # -- shifts, delays, robots ----------------------------------------------------------------

    def shift(self, at: datetime) -> str:
        cached = self._shift_at
        if cached is not None and cached[0] == at:
            return cached[1]
        local = at.astimezone(self.zone).time()
        if self.day_starts <= self.night_starts:
            shift = "day" if self.day_starts <= local < self.night_starts else "night"
        else:
            shift = "night" if self.night_starts <= local < self.day_starts else "day"
        self._shift_at = (at, shift)
        return shift

    def scenario(self, message_type: str | None, at: datetime) -> str:
        if message_type == "chat_complaint":
            return "urgent"
        kind = "complex" if message_type in self.complex_types else "operation"
        return f"{self.shift(at)}_shift_{kind}"

    def delay(self, message_id: str, scenario: str) -> float:
        """Uniform in the scenario's range, reproducible: seeded by the message id and the scenario."""
        low, high = self.c.delays[scenario]
        seed = int.from_bytes(
            hashlib.blake2b(f"{message_id}\x1f{scenario}".encode(), digest_size=8).digest(), "big"
        )
        # random.Random(seed).uniform(low, high), by the C generator's own seed() and random(): the
        # Python wrappers (Random.seed's type checks, uniform) cost a fifth of the draw, the same numbers.
        rng = self._rng
        rng.seed(seed)
        return round(low + (high - low) * rng.random(), 3)

    def shift_robot(self, at: datetime) -> str | None:
        robots = self.by_role.get(f"reply_{self.shift(at)}", [])
        return robots[0] if robots else None

    def persona_of(self, robot_id: str | None) -> str:
        return self.personas.get(robot_id or "", self.unlisted_persona)

    def robot_for(self, in_group: set[str], reporting: str, at: datetime) -> str | None:
        shift_robots = self.by_role.get(f"reply_{self.shift(at)}", [])
        present = [r for r in shift_robots if r in in_group]
        if present:
            return present[0]
        return reporting if reporting in self.reply_robots else None

    # -- decisions -----------------------------------------------------------------------------

    def wants_reply(self, m: Message, c: Classification, mentioned: list[str]) -> bool:
        if c.sender_type == "operator":
            return self.c.soothe_operator_hard and c.message_type == "operator_tone_hard"
        if c.sender_type != "user":
            return False
        if self.reply_robots.intersection(mentioned):
            return True
        return bool(c.need_reply) and c.message_type in self.reply_types

    def plan_reply(
        self,
        m: Message,
        c: Classification,
        in_group: set[str],
        owners: list[str],
        paused: bool,
        staff_handling: bool,
    ) -> PlannedSend | Skip:
        if paused:
            return Skip(m.message_id, "replies_paused")
        if staff_handling:
            return Skip(m.message_id, "staff_handling")
        # The best guess now; the robot is chosen again when the reply is due, when every robot's report of
        # this message has arrived (the first report is often the monitor robot's).
        robot = self.robot_for(in_group, m.robot_id, m.received_at) or self.shift_robot(m.received_at)
        if robot is None:
            return Skip(m.message_id, "no_reply_robot_configured")
        kind = c.message_type or "chat_daily"
        scenario = self.scenario(c.message_type, m.received_at)
        persona = self.persona_of(robot)
        # An operator's harsh words: soothe the owners they were aimed at.
        addressees = owners if c.sender_type == "operator" else [m.sender_name]
        reply = self.writer.compose(ReplyRequest(
            kind, m.message_id, scenario, self.shift(m.received_at), persona, user="、".join(addressees),
            group=m.group_remark or m.group_name or m.sender_name, text=m.text, robot=self.names.get(robot, robot),
        ))  # fmt: skip
        text = reply.text
        at_list: tuple[str, ...] = ()
        if m.is_group and addressees:
            at_list = tuple(addressees)
            text = "".join(f"@{a} " for a in addressees) + text
        delay = self.delay(m.message_id, scenario)
        due = m.received_at + timedelta(seconds=delay)
        return PlannedSend(m.message_id, _command_id(m.message_id, "reply"), robot, m.reply_target, text, at_list, due,
                           delay, "reply_scheduled", m.robot_id, m.received_at, reply.persona or persona,
                           reply.template_id)  # fmt: skip

    def plan_notice(self, m: Message) -> PlannedSend:
        """The after-sales notice to staff, through the notify robot."""
        persona = self.persona_of(self.notify_robot)
        reply = self.writer.compose(ReplyRequest(
            NOTICE, m.message_id, NOTICE, self.shift(m.received_at), persona, user=m.sender_name,
            group=m.group_remark or m.group_name or "私聊", text=m.text,
            robot=self.names.get(self.notify_robot or "", ""),
        ))  # fmt: skip
        delay = self.delay(m.message_id, NOTICE)
        due = m.received_at + timedelta(seconds=delay)
        return PlannedSend(m.message_id, _command_id(m.message_id, NOTICE), self.notify_robot, self.staff_target,
                           reply.text, (), due, delay, NOTICE, persona=reply.persona or persona,
                           template_id=reply.template_id)  # fmt: skip
