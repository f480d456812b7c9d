"""Business configuration: one YAML file named by WORKTOOL_CONFIG, validated with pydantic.

Everything a business person tunes lives here, with the docs/rules.md defaults built in, so an empty
file (or no file) works. Errors name the bad key (and the bad regex).
Every regular expression runs in linear time (RE2, worktool/linear_regex.py): a look-around or a
back-reference is refused at load.

Roster: `robots`, `staff`, `operators`, `assistants` are exact display names; `staff_patterns`,
`operator_patterns`, `assistant_patterns` are regular expressions tried after every exact name
(docs/rules.md §1). The `classifier:` section is merged over worktool/rule_defaults.py (mappings merge
key by key, lists and numbers replace), see that module for the meaning of each list.
"""

from __future__ import annotations

import copy
import math
import re
from datetime import time
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from worktool.catalogue import Persona, PersonaChange, preset_personas, shipped_catalogue
from worktool.linear_regex import LinearRegex, PatternError, check_linear
from worktool.rule_defaults import DEFAULT_CLASSIFIER, QUALITY_CUES

RobotRole = Literal["monitor", "notify", "reply_day", "reply_night"]


def _check_regex(pattern: str) -> str:
    """Every configured pattern must run in linear time (RE2, worktool/linear_regex.py): a look-around or
    back-reference is refused here, so the error names the key that holds it."""
    try:
        check_linear(pattern)
    except PatternError as e:
        raise ValueError(str(e)) from None
    return pattern


def _check_weights(terms: dict[str, float]) -> dict[str, float]:
    for term, weight in terms.items():
        if not term:
            raise ValueError("empty term")
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"weight of {term!r} must be a finite number >= 0, got {weight}")
    return terms


def _check_regex_weights(terms: dict[str, float]) -> dict[str, float]:
    for pattern in _check_weights(terms):
        _check_regex(pattern)
    return terms


Regex = Annotated[str, AfterValidator(_check_regex)]
# {term: weight}; weight 0 switches a default term off.
Weights = Annotated[dict[str, float], AfterValidator(_check_weights)]
RegexWeights = Annotated[dict[str, float], AfterValidator(_check_regex_weights)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RobotConfig(_Strict):
    robot_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    role: RobotRole
    # Its reply persona (docs/rules.md §5): this one when set, else chosen by `group` and `role`
    # (`personas.by_group`, `personas.by_role`, `personas.default`).
    persona: str | None = Field(default=None, min_length=1)
    group: str | None = Field(default=None, min_length=1)  # the robot's group (分组), e.g. 社群, 售后, 营销


class TermRules(_Strict):
    """Weighted keywords (substrings) and regex patterns that vote for one label."""

    keywords: Weights = Field(default_factory=dict)
    patterns: RegexWeights = Field(default_factory=dict)
    # Whether a negator just before a keyword cancels it ("不是投诉", "不用马上").
    negatable: bool = False

    @cached_property
    def compiled_patterns(self) -> tuple[tuple[LinearRegex, float], ...]:
        return tuple((LinearRegex(p), w) for p, w in self.patterns.items() if w > 0)


class UserTypeRules(_Strict):
    """One TermRules per user message type (docs/rules.md §2); chat_other catches spam and placeholders."""

    chat_after_sales: TermRules
    chat_complaint: TermRules
    chat_private_operation: TermRules
    chat_cooperation: TermRules
    chat_complain_discuss: TermRules
    chat_daily: TermRules
    chat_other: TermRules


class ResponseWords(_Strict):
    responded: list[str]  # docs/rules.md §7
    refused: list[str]  # docs/rules.md §7; a refusal wins over a response in the same message
    acknowledgements: list[str]
    fillers: list[str]
    refusal_words: Weights
    refusal_negators: list[Annotated[str, Field(min_length=1, max_length=1)]]
    question_suffixes: list[str]
    refused_weight: float = Field(ge=0)
    negated_response_weight: float = Field(ge=0)
    ack_weight: float = Field(ge=0)
    ack_only_weight: float = Field(ge=0)


class StaffRules(_Strict):
    reply: TermRules
    task: TermRules
    other: TermRules
    reply_threshold: float
    at_reply_min: float
    self_mentions: list[str]  # "@我": the writer, never an owner


class OperatorRules(_Strict):
    tone_hard: TermRules
    calm: list[str]  # phrases holding a harsh word without its tone ("马上就好"); they hide it
    hard_threshold: float
    exclamation_limit: int = Field(ge=0)
    exclamation_weight: float
    politeness: Weights
    self_subjects: list[str]
    assign: TermRules
    other: TermRules
    assign_threshold: float
    mention_weight: float


class SentimentConfig(_Strict):
    positive: Weights
    negative: Weights
    intensifiers: Weights
    neutral: list[str]
    negated_negative_factor: float = Field(ge=0.0, le=1.0)
    exclamation_boost: float = Field(ge=0.0)


class SatisfactionConfig(_Strict):
    initial: Probability
    alpha: Probability
    neutral_band: Probability
    neutral_decay: Probability
    complaint_target: Probability
    complaint_alpha: Probability
    low: Probability
    high: Probability
    idle_days: float = Field(gt=0)
    sweep_interval_s: float = Field(gt=0)


class ClassifierConfig(_Strict):
    """Every word list, pattern and weight of the rule classifier; defaults in worktool/rule_defaults.py."""

    threshold: float
    complaint_strong_weight: float
    peer_question_weight: float = Field(ge=0)
    negation_window: int = Field(ge=0)
    negators: list[Annotated[str, Field(min_length=1, max_length=1)]]  # single characters
    negation_exceptions: list[str]
    question_patterns: list[Regex]
    hypothetical_words: list[str]
    request_words: list[str]
    peer_words: list[str]
    peer_vocatives: list[str]  # opening a message, they make a following "你们" mean the other owners
    addressee_words: list[str]
    user: UserTypeRules
    responses: ResponseWords
    reply_types: list[str]
    always_reply_types: list[str]
    staff: StaffRules
    operator: OperatorRules
    staff_commands: dict[str, str]
    sentiment: SentimentConfig
    satisfaction: SatisfactionConfig

    @model_validator(mode="before")
    @classmethod
    def _merge_over_defaults(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return data  # pydantic reports the type error
        return deep_merge(DEFAULT_CLASSIFIER, data)

    @cached_property
    def question_regex(self) -> LinearRegex:
        return LinearRegex("|".join(f"(?:{p})" for p in self.question_patterns))


# ---------------------------------------------------------------------------------------------
# Event-time rules (docs/rules.md §3 staff intervention, §4 alerts). Minutes unless named otherwise.

AlertType = Literal[
    "user_complaint",
    "staff_no_reply",
    "user_not_cooperating",
    "task_not_followed_up",
    "task_unfinished",
    "low_satisfaction",
    "operator_harsh",
    "private_operation",
    "robot_fault",
    "pipeline_gap",
    "no_staff_available",
]
ALERT_TYPES: tuple[str, ...] = AlertType.__args__  # type: ignore[attr-defined]
Minutes = Annotated[float, Field(gt=0)]
Level = Annotated[int, Field(ge=1, le=4)]


class StaffWindowConfig(_Strict):
    """A session is "staff handling" from a staff (or assistant) message until this long passes
    without one; no automatic reply is sent meanwhile."""

    minutes: Minutes = 10


QualityCue = Literal[
    "redirect",
    "self_help",
    "not_mine",
    "helpless",
    "pushback",
    "agency",
    "steps",
    "action",
    "time",
    "explanation",
    "courtesy",
]


class InterventionConfig(_Strict):
    user_waiting_minutes: Minutes = 30  # user_waiting_too_long (and the staff_no_reply alert)
    negative_sentiment: float = Field(default=-0.3, ge=-1, le=0)  # a user's reply this negative, after staff
    # staff_low_reply_quality (docs/rules.md §3, situation 2; operators/quality.py): a staff or assistant
    # text answering an owner's question asked at most `reply_window_minutes` before scores below this.
    staff_low_quality: Probability = 0.5
    reply_window_minutes: Minutes = 30
    # The rule fallback of the score reads the structure of the reply (`quality_cues`, by category; a
    # category given here replaces its default list)...
    quality_cues: dict[QualityCue, list[Regex]] = Field(default_factory=lambda: copy.deepcopy(QUALITY_CUES))
    # ...plus these bare brush-offs (substrings), counted like one more dismissive shape...
    dismissive_words: list[str] = Field(
        default_factory=lambda: [
            "随便",
            "等着吧",
            "爱咋咋地",
            "看着办",
            "再说吧",
            "没空",
            "别问了",
            "自己看",
            "问别人",
        ]
    )
    # ...a reply with a dismissive shape and nothing helpful scores at most `dismissive_score`; one with
    # fewer than `short_reply_chars` letters or digits (without @mentions, punctuation, emoji), or only
    # acknowledgements and fillers ("嗯", "哦", "好的", "收到"), at most `short_score`.
    dismissive_score: Probability = 0.2
    short_reply_chars: int = Field(default=4, ge=0)
    short_score: Probability = 0.3

    @model_validator(mode="after")
    def _complete_cues(self) -> InterventionConfig:
        missing = {k: list(v) for k, v in QUALITY_CUES.items() if k not in self.quality_cues}
        if missing:
            self.quality_cues = {**missing, **self.quality_cues}
        return self


class NotificationConfig(_Strict):
    """Where alert notifications go. WeCom texts go through the notify robot to `staff_target` (a staff
    group's remark/name, or a person); phone and SMS go to webhooks the dispatcher calls."""

    staff_target: str = "售后工作群"
    reminder_minutes: Minutes = 10  # level >= 2: a reminder if the alert is still open this much later
    phone_targets: list[str] = Field(default_factory=list)  # level >= 3
    sms_targets: list[str] = Field(default_factory=list)  # level 4
    min_interval_minutes: float = Field(
        default=5, ge=0
    )  # repeated notifications of one alert, at most one per


class AlertConfig(_Strict):
    start_levels: dict[AlertType, Level] = Field(
        default_factory=lambda: {
            "user_complaint": 4,
            "staff_no_reply": 1,
            "user_not_cooperating": 2,
            "task_not_followed_up": 2,
            "task_unfinished": 3,
            "low_satisfaction": 3,
            "operator_harsh": 2,
            "private_operation": 2,
            "robot_fault": 3,
            "pipeline_gap": 2,
            "no_staff_available": 2,
        }
    )
    # A repeat of an open alert's key within escalation_minutes[level - 1] of its previous trigger raises
    # its level by one (1->2 within 30, 2->3 within 60, 3->4 within 90); later, it re-notifies.
    escalation_minutes: Annotated[list[Minutes], Field(min_length=3, max_length=3)] = Field(
        default_factory=lambda: [30.0, 60.0, 90.0]
    )
    expiry_minutes: Minutes = 1440  # an open alert not triggered again for this long is cancelled "expired"
    user_not_cooperating_minutes: Minutes = 60
    task_not_followed_up_minutes: Minutes = 3
    task_unfinished_minutes: Minutes = 1440
    # A user saying the problem is solved cancels their alerts (problem_solved).
    solved_words: list[str] = Field(
        default_factory=lambda: ["解决了", "已经好了", "搞定了", "弄好了", "没问题了", "可以了", "好了谢谢"]
    )
    # Clearly positive feedback (sentiment at least this) cancels the user's alerts (user_satisfied).
    positive_sentiment: float = Field(default=0.5, ge=0, le=1)
    notifications: NotificationConfig = Field(default_factory=NotificationConfig)

    @model_validator(mode="after")
    def _complete(self) -> AlertConfig:
        missing = [t for t in ALERT_TYPES if t not in self.start_levels]
        if missing:
            self.start_levels = {
                **AlertConfig.model_fields["start_levels"].default_factory(),
                **self.start_levels,
            }
        return self


# ---------------------------------------------------------------------------------------------
# Replies (docs/rules.md §5) and robot health (§8)

# Reply-delay scenario -> the range an operator may configure it in (seconds).
DELAY_LIMITS: dict[str, tuple[float, float]] = {
    "day_shift_operation": (1, 15),
    "night_shift_operation": (3, 60),
    "urgent": (0, 5),
    "after_sales_notify": (0, 5),
    "day_shift_complex": (3, 30),
    "night_shift_complex": (5, 60),
}
# What a reply template may use: {{user}} the asker, {{group}} the group (or the chat's name), {{text}}
# the message, {{robot}} the replying robot's name.
TEMPLATE_VARIABLES = frozenset({"user", "group", "text", "robot"})
_TEMPLATE_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


def _check_template(text: str) -> str:
    unknown = sorted({v for v in _TEMPLATE_VARIABLE.findall(text)} - TEMPLATE_VARIABLES)
    if unknown:
        raise ValueError(
            f"unknown template variable(s) {', '.join('{{' + v + '}}' for v in unknown)}; "
            f"known: {', '.join(sorted(TEMPLATE_VARIABLES))}"
        )
    if not text.strip():
        raise ValueError("empty template")
    return text


Template = Annotated[str, AfterValidator(_check_template)]
ClockTime = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]


class ReplyConfig(_Strict):
    day_starts: ClockTime = "09:00"  # reply_day robots answer from here ...
    night_starts: ClockTime = "21:00"  # ... reply_night robots from here (time zone: `timezone`)
    delays: dict[str, Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        default_factory=lambda: {
            "day_shift_operation": [2, 8],
            "night_shift_operation": [5, 30],
            "urgent": [1, 2],
            "after_sales_notify": [1, 2],
            "day_shift_complex": [5, 15],
            "night_shift_complex": [10, 30],
        }
    )
    # Message types whose replies count as complex questions (longer delays).
    complex_types: list[str] = Field(default_factory=lambda: ["chat_after_sales", "chat_private_operation"])
    soothe_operator_hard: bool = True  # the shift's reply robot soothes the owner an operator was harsh to
    # The shipped template catalogue (worktool/catalogue/templates.yaml) writes the replies: several
    # variants per message type, chosen by persona, scenario and shift. A type listed in `templates` below
    # keeps its configured template; `catalogue: false` uses `templates` (and their defaults) only.
    catalogue: bool = True
    # With an LLM configured (WORKTOOL_LLM_PROVIDER), the LLM writes the replies to owners from the
    # persona, the conversation's latest `llm_context_messages` messages and the knowledge base; the
    # template is sent on any failure (operators/reply_writer.py). False: templates only.
    llm: bool = True
    llm_context_messages: int = Field(default=6, ge=0, le=30)
    # Values of the catalogue's setting variables ({{wait_minutes}}, {{product}}, ...; see
    # `worktool templates list`), over the catalogue's defaults.
    variables: dict[str, Annotated[str, Field(max_length=200)]] = Field(default_factory=dict)
    # The message types whose template the configuration names (they win over the catalogue).
    _configured_templates: frozenset[str] = PrivateAttr(default=frozenset())
    templates: dict[str, Template] = Field(
        default_factory=lambda: {
            "chat_daily": "您好，收到您的消息，我们会尽快为您处理～",
            "chat_after_sales": "收到，售后同事马上来协助您，请稍等～",
            "chat_complaint": "非常抱歉给您带来不好的体验，已安排专人马上处理，请您稍等。",
            "chat_cooperation": "好的，感谢您的配合！",
            "chat_private_operation": "收到，请先不要自行操作账号，售后同事马上联系您。",
            "chat_complain_discuss": "您好，有任何问题都可以直接问我们哦～",
            "chat_other": "您好，请问有什么可以帮您？",
            "operator_tone_hard": "您好，我们这边已经在跟进了，请放心～",
            "after_sales_notify": "【售后】{{group}} {{user}}：{{text}}",
        }
    )

    @model_validator(mode="after")
    def _check(self) -> ReplyConfig:
        for scenario, (low, high) in self.delays.items():
            limits = DELAY_LIMITS.get(scenario)
            if limits is None:
                raise ValueError(f"delays.{scenario}: unknown scenario; known: {', '.join(DELAY_LIMITS)}")
            if not limits[0] <= low <= high <= limits[1]:
                raise ValueError(
                    f"delays.{scenario}: [{low}, {high}] must be a range within the allowed {list(limits)} seconds"
                )
        missing = [s for s in DELAY_LIMITS if s not in self.delays]
        if missing:
            defaults = ReplyConfig.model_fields["delays"].default_factory()
            self.delays = {**{s: defaults[s] for s in missing}, **self.delays}
        settings = {n for n, v in shipped_catalogue().variables.items() if v.source == "setting"}
        unknown = sorted(set(self.variables) - settings)
        if unknown:
            raise ValueError(f"variables: unknown {', '.join(unknown)}; known: {', '.join(sorted(settings))}")
        # A configured template replaces the default of its type only (and the catalogue's choice).
        self._configured_templates = frozenset(self.templates if "templates" in self.model_fields_set else ())
        self.templates = {**ReplyConfig.model_fields["templates"].default_factory(), **self.templates}
        return self

    @property
    def configured_templates(self) -> frozenset[str]:
        """The message types whose template the configuration sets (not a default)."""
        return self._configured_templates

    def clock(self, which: str) -> time:
        hours, minutes = (self.day_starts if which == "day" else self.night_starts).split(":")
        return time(int(hours), int(minutes))


# The seeds' selectPersona table: a robot's group -> persona (a group that is a persona's code is that
# persona too).
DEFAULT_PERSONA_GROUPS: dict[str, str] = {
    "营销": "conversion",
    "社群": "community",
    "售后": "service",
    "技术支持": "tech_support",
    "客服": "service",
    "角色": "conversion",
    "助手": "assistant",
    "产品": "product_info",
    "客户关系": "customer_relation",
}


class PersonaConfig(_Strict):
    """Reply personas (docs/rules.md §5): the seven presets of worktool/catalogue/personas.yaml,
    `overrides` changing their fields (or adding a persona: name, system_prompt and tone at least), and
    how a robot without an explicit `persona` gets one: its `group` through `by_group`, else its role
    through `by_role`, else `default`."""

    default: str = "assistant"
    by_group: dict[str, str] = Field(default_factory=dict)  # merged over DEFAULT_PERSONA_GROUPS
    by_role: dict[RobotRole, str] = Field(default_factory=lambda: {"notify": "service"})
    overrides: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], PersonaChange] = Field(
        default_factory=dict
    )
    _definitions: dict[str, Persona] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _resolve(self) -> PersonaConfig:
        self.by_group = {**DEFAULT_PERSONA_GROUPS, **self.by_group}
        definitions = dict(preset_personas())
        for code, change in self.overrides.items():
            try:
                definitions[code] = change.apply(code, definitions.get(code))
            except ValidationError as e:
                problems = "; ".join(f"{'.'.join(str(p) for p in x['loc'])}: {x['msg']}" for x in e.errors())
                raise ValueError(f"overrides.{code}: {problems}") from None
        self._definitions = definitions
        for where, code in [("default", self.default), *((f"by_group.{g}", c) for g, c in self.by_group.items()),
                            *((f"by_role.{r}", c) for r, c in self.by_role.items())]:  # fmt: skip
            if code not in definitions:
                raise ValueError(f"{where}: unknown persona {code!r}; known: {', '.join(definitions)}")
        return self

    @property
    def definitions(self) -> dict[str, Persona]:
        """Every persona by code: the presets with `overrides` applied, and the added ones."""
        return self._definitions

    def with_versions(self, versions: dict[str, Persona]) -> PersonaConfig:
        """A copy whose personas are replaced by these (the console's latest versions)."""
        copy_ = self.model_copy()
        copy_._definitions = {**self._definitions, **versions}
        return copy_


class HealthConfig(_Strict):
    """Robot health score (docs/rules.md §8): 100 - min(failure_weight x failures, failure_cap)
    - min(consecutive_weight x consecutive failures, consecutive_cap) - recency penalty."""

    failure_weight: float = 5
    failure_cap: float = 30
    consecutive_weight: float = 10
    consecutive_cap: float = 40
    recent_minutes: Minutes = 5
    recent_penalty: float = 20
    older_minutes: Minutes = 30
    older_penalty: float = 10
    healthy_from: float = 80
    warning_from: float = 50  # below: critical, raises robot_fault


# ---------------------------------------------------------------------------------------------
# After-sales tasks and the desk that assigns them (docs/rules.md §7)

TaskPriority = Literal["low", "normal", "high", "urgent"]
PRIORITY_RANK: dict[str, int] = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
PRIVATE_OPERATION_TASK = "private_operation"  # opened by a chat_private_operation message, not by keywords
OTHER_TASK = "other"  # an after-sales need no keyword names


class TaskTypeConfig(_Strict):
    code: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    label: Annotated[str, Field(min_length=1, max_length=32)]  # shown to staff and owners (Chinese)
    priority: TaskPriority = "normal"
    keywords: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list
    )  # first type matching wins
    skill: str | None = None  # desk members with this skill are preferred (after load)
    target_minutes: Minutes = 240  # SLA: completed within this long of opening


def _default_task_types() -> list[TaskTypeConfig]:
    return [
        TaskTypeConfig(code="scan_qr", label="扫码认证", priority="high", skill="verification",
                       keywords=["扫码", "二维码", "二唯码", "qr"], target_minutes=60),
        TaskTypeConfig(code="real_name", label="实名认证重做", priority="high", skill="verification",
                       keywords=["实名", "认证", "人脸", "刷脸", "身份", "出镜人", "出境人"], target_minutes=120),
        TaskTypeConfig(code="bind_phone", label="绑定手机号", priority="normal", skill="account",
                       keywords=["绑定", "换绑", "手机号", "验证码"], target_minutes=240),
        TaskTypeConfig(code="appeal_video", label="申诉自拍视频", priority="normal", skill="appeal",
                       keywords=["申诉", "自拍", "封号", "被封", "解封"], target_minutes=480),
        TaskTypeConfig(code=PRIVATE_OPERATION_TASK, label="私自操作处理", priority="urgent", skill="account",
                       target_minutes=30),
        TaskTypeConfig(code=OTHER_TASK, label="其他售后", priority="normal", target_minutes=240),
    ]  # fmt: skip


_HHMM = r"(?:[01]\d|2[0-3]):[0-5]\d"


class DeskMember(_Strict):
    """A staff member who takes after-sales tasks. `on_duty`: local time ranges ("09:00-18:00"; one
    ending before it starts runs past midnight, "22:00-06:00"); empty: always on duty."""

    name: Annotated[str, Field(min_length=1, max_length=128)]
    skills: list[str] = Field(default_factory=list)
    max_open_tasks: int = Field(default=10, ge=1, le=1000)
    on_duty: list[Annotated[str, Field(pattern=rf"^{_HHMM}-{_HHMM}$")]] = Field(
        default_factory=lambda: ["09:00-21:00"]
    )

    @cached_property
    def duty_ranges(self) -> tuple[tuple[time, time], ...]:
        return tuple(
            (time.fromisoformat(a), time.fromisoformat(b)) for a, b in (r.split("-") for r in self.on_duty)
        )


class ProfileConfig(_Strict):
    """Customer profiles (operators/profiles.py, docs/rules.md §7.6)."""

    update_minutes: Minutes = 10  # at most one customer_updated per owner this often (event time)
    response_target_minutes: Minutes = 60  # an average wait this long scores 0 in the health score
    trend_scores: int = Field(default=5, ge=2, le=50)  # satisfaction scores the trend looks over


class AfterSalesConfig(_Strict):
    task_types: list[TaskTypeConfig] = Field(default_factory=_default_task_types)
    # Who takes tasks (also staff by name: every member must be in `staff` or match `staff_patterns`).
    desk: list[DeskMember] = Field(default_factory=list)
    # An owner silent this long after a staff @ about their task: the assignee is reminded.
    reminder_minutes: Minutes = 30
    profiles: ProfileConfig = Field(default_factory=ProfileConfig)

    @model_validator(mode="after")
    def _consistent(self) -> AfterSalesConfig:
        codes = [t.code for t in self.task_types]
        twice = sorted({c for c in codes if codes.count(c) > 1})
        if twice:
            raise ValueError(f"task type(s) listed twice: {', '.join(twice)}")
        defaults = {t.code: t for t in _default_task_types()}
        for needed in (PRIVATE_OPERATION_TASK, OTHER_TASK):
            if needed not in codes:  # the stream opens these two whatever the list says
                self.task_types.append(defaults[needed])
        names = [m.name for m in self.desk]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"desk member(s) listed twice: {', '.join(twice)}")
        return self

    @cached_property
    def task_type_by_code(self) -> dict[str, TaskTypeConfig]:
        return {t.code: t for t in self.task_types}

    def task_type_for(self, text: str) -> TaskTypeConfig:
        """The first configured type one of whose keywords is in `text` (lower-cased), else "other"."""
        lowered = text.lower()
        for t in self.task_types:
            for word in t.keywords:
                if word in lowered:
                    return t
        return self.task_type_by_code[OTHER_TASK]


class CommandConfig(_Strict):
    result_timeout_s: Annotated[float, Field(gt=0)] = 60  # accepted, no result callback -> timeout
    lookups: int = Field(default=3, ge=0)  # then looked up again this many times ...
    lookup_interval_s: Annotated[float, Field(gt=0)] = 30  # ... this far apart; then unknown


class BusinessConfig(_Strict):
    robots: list[RobotConfig] = Field(default_factory=list)
    staff: list[str] = Field(default_factory=list)
    operators: list[str] = Field(default_factory=list)
    assistants: list[str] = Field(default_factory=list)
    staff_patterns: list[Regex] = Field(default_factory=list)
    operator_patterns: list[Regex] = Field(default_factory=list)
    assistant_patterns: list[Regex] = Field(default_factory=list)
    timezone: str = "Asia/Shanghai"
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    staff_window: StaffWindowConfig = Field(default_factory=StaffWindowConfig)
    intervention: InterventionConfig = Field(default_factory=InterventionConfig)
    alerts: AlertConfig = Field(default_factory=AlertConfig)
    replies: ReplyConfig = Field(default_factory=ReplyConfig)
    personas: PersonaConfig = Field(default_factory=PersonaConfig)
    commands: CommandConfig = Field(default_factory=CommandConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    after_sales: AfterSalesConfig = Field(default_factory=AfterSalesConfig)

    @model_validator(mode="after")
    def _robot_personas(self) -> BusinessConfig:
        known = self.personas.definitions
        for i, robot in enumerate(self.robots):
            if robot.persona is not None and robot.persona not in known:
                raise ValueError(
                    f"robots.{i}.persona: unknown persona {robot.persona!r}; known: {', '.join(known)}"
                )
        return self

    @model_validator(mode="after")
    def _desk_are_staff(self) -> BusinessConfig:
        roster = set(self.staff)
        patterns = [LinearRegex(p) for p in self.staff_patterns]
        strangers = [
            m.name
            for m in self.after_sales.desk
            if m.name not in roster and not any(p.matches(m.name) for p in patterns)
        ]
        if strangers:
            raise ValueError(
                f"after_sales.desk: {', '.join(strangers)} not staff (add to `staff` or match `staff_patterns`): "
                "their messages would not count as staff answers"
            )
        return self

    def robots_with_role(self, role: RobotRole) -> list[RobotConfig]:
        return [r for r in self.robots if r.role == role]

    @property
    def robot_names(self) -> frozenset[str]:
        return frozenset(r.name for r in self.robots)

    @cached_property
    def compiled_name_patterns(self) -> dict[str, tuple[LinearRegex, ...]]:
        """Roster patterns by sender type, in docs/rules.md §1 precedence order."""
        return {
            "operator": tuple(LinearRegex(p) for p in self.operator_patterns),
            "staff": tuple(LinearRegex(p) for p in self.staff_patterns),
            "assistant": tuple(LinearRegex(p) for p in self.assistant_patterns),
        }


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over a copy of `base`: mappings merge recursively, anything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the bad key."""


def _format_errors(path: Path | str, err: ValidationError) -> str:
    lines = [f"invalid business configuration {path}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: Path | str | None) -> BusinessConfig:
    """Load and validate the YAML file; None or an empty file gives the defaults."""
    if path is None:
        return BusinessConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read business configuration {p}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"business configuration {p} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"business configuration {p} must be a mapping at the top level")
    try:
        return BusinessConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(p, e)) from e
