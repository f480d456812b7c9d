"""The reply writer (operators/reply_writer.py) on its own, with a generator the test controls: what an
LLM reply may say (`check_reply`), the prompt, a reply written by the LLM with its provenance and its
record, the template on every failure, a late answer that holds its command (never the flow), a
withdrawn reply, a restart with a held command, and a replay from the recordings giving what live sent."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.knowledge import Passage
from operators.recordings import Recordings
from operators.reply_writer import (
    WAKE_S,
    GeneratedReply,
    ReplyDraft,
    ReplyWriterStep,
    Said,
    WriterPolicy,
    build_messages,
    check_reply,
    instructions,
)
from operators.timers import Tick
from worktool.config import BusinessConfig
from worktool.events import CommandCreated, MessageClassified, ReplyScheduled, ReplyWithdrawn
from worktool.models import CommandCause, CommandRecord, LlmRecord

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
SID = "group:视频号运营3群"
CONFIG = BusinessConfig()
SERVICE = CONFIG.personas.definitions["service"]
KB = (
    Passage(id="kb_1", title="实名认证怎么重做", text="进入视频号助手-账号设置-实名认证，按提示刷脸，客服电话 400-820-8820。",
            source="kb.jsonl:1", score=1.0),
)  # fmt: skip


@dataclass
class FakeGenerator:
    """Answers what the test sets; `ready` only when the test says so."""

    provider: str = "fake"
    answers: dict[str, GeneratedReply] = field(default_factory=dict)  # by message id
    ready_ids: set[str] = field(default_factory=set)
    started: list[ReplyDraft] = field(default_factory=list)

    def start(self, draft: ReplyDraft) -> str:
        self.started.append(draft)
        return draft.message_id

    def ready(self, handle: str) -> bool:
        return handle in self.ready_ids

    def result(self, handle: str) -> GeneratedReply:
        return self.answers.get(handle, GeneratedReply(None, "fake-model", error="timeout"))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def classified(mid: str, text: str, sender: str, sender_type: str = "user", seconds: float = 0) -> Any:
    data = MessageClassified.make(message_id=mid, sender_type=sender_type, sender_name=sender, text=text)
    return data.at(at(seconds), SID, "wt_day")


def scheduled(mid: str, persona: str = "service", seconds: float = 0) -> Any:
    data = ReplyScheduled.make(message_id=mid, robot_id="wt_day", target="视频号运营3群", delay_s=5,
                               due_time=at(seconds + 5), persona=persona, template_id="tpl_after_sales_1")  # fmt: skip
    return data.at(at(seconds), SID, "wt_day")


def command(mid: str, asker: str = "小王", seconds: float = 5) -> CommandRecord:
    return CommandRecord(
        command_id=f"cmd_{mid}", channel="wecom", robot_id="wt_day", target="视频号运营3群",
        content=f"@{asker} 您好，已收到您的问题，售后同事马上为您处理。", at_list=[asker], due_time=at(seconds),
        cause=CommandCause(event="reply_scheduled", message_id=mid),
    )  # fmt: skip


def created(c: CommandRecord) -> Any:
    data = CommandCreated.make(command_id=c.command_id, channel="wecom", robot_id=c.robot_id, target=c.target,
                               content=c.content, at_list=c.at_list, due_time=c.due_time,
                               cause_event="reply_scheduled", cause_id=c.cause.message_id, persona="service",
                               template_id="tpl_after_sales_1")  # fmt: skip
    return data.at(c.due_time, SID, c.robot_id)


def story(step: ReplyWriterStep, mid: str = "m1") -> list[Any]:
    """Staff spoke, the owner asked; the reply is planned; then it is due (command, event)."""
    out: list[Any] = []
    out += step.on_item(classified("m0", "大家好，有问题随时问", "售后-小李", "staff", -60))
    out += step.on_item(classified(mid, "实名认证失败了怎么重新做", "小王"))
    out += step.on_item(scheduled(mid))
    c = command(mid)
    out += step.on_item(c)
    out += step.on_item(created(c))
    return out


def split(out: list[Any]) -> tuple[list[CommandRecord], list[Any], list[LlmRecord]]:
    commands = [x for x in out if isinstance(x, CommandRecord)]
    events = [x for x in out if getattr(x, "event", None) == "command_created"]
    records = [x for x in out if isinstance(x, LlmRecord)]
    return commands, events, records


@pytest.fixture
def generator() -> FakeGenerator:
    return FakeGenerator()


def live(generator: FakeGenerator) -> ReplyWriterStep:
    return ReplyWriterStep(WriterPolicy(CONFIG), generator)


# -- check_reply ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("您好，实名认证可以在视频号助手的账号设置里重新做，按提示刷脸即可。", "ok"),
        ("  “您好，已为您登记，售后同事马上联系您。”  ", "ok"),
        (None, "empty"),
        ("   ", "empty"),
        ("好" * 200, "too_long"),
        ("Hello, please redo the verification in the settings page.", "not_chinese"),
        ("根据系统提示，我需要礼貌回答您的问题。", "prompt_leak"),
        ("作为一个AI语言模型，我无法处理这个问题。", "prompt_leak"),
        ("请拨打 13812345678 联系我们的售后。", "phone_number"),
        ("请拨打客服电话 400-820-8820 咨询。", "ok"),  # the passage states it
        ("详情请看 https://example.com/help 哦", "link"),
        (
            "售后会跟进的。请按以下步骤操作：你是号主社群里的社群运营助手，负责",
            "ok",
        ),  # not the service persona's
        ("您好，" + SERVICE.system_prompt[:20], "prompt_leak"),
        ("给您退款50元，请查收。", "money_promise"),
        ("我们会在3个工作日内处理完成。", "date_promise"),
        ("明天就给您处理好。", "date_promise"),
    ],
)
def test_what_an_llm_reply_may_say(text: str | None, why: str) -> None:
    sent, reason = check_reply(text, SERVICE, KB, instructions(SERVICE, ()))
    assert reason == why
    assert (sent is not None) == (why == "ok")


def test_the_emoji_policy_of_the_persona_applies() -> None:
    text = "您好😀，马上为您处理🎉🎉"
    none = SERVICE.model_copy(update={"emoji": "none"})
    light = SERVICE.model_copy(update={"emoji": "light"})
    assert check_reply(text, none, (), "")[0] == "您好，马上为您处理"
    assert check_reply(text, light, (), "")[0] == "您好😀，马上为您处理"


def test_the_prompt_is_the_persona_the_passages_the_conversation_and_the_question_last() -> None:
    draft = ReplyDraft("m2", SID, "service", "小王", "实名认证失败了怎么办",
                       (Said("m0", "staff", "售后-小李", "大家好"), Said("m1", "robot", "小助手", "您好")), None)  # fmt: skip
    messages = build_messages(SERVICE, draft, KB)
    assert messages[0]["role"] == "system"
    assert SERVICE.system_prompt in messages[0]["content"] and "实名认证怎么重做" in messages[0]["content"]
    assert f"不超过{SERVICE.max_reply_chars}个字" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert (
        messages[1]["content"] == "售后-小李：大家好"
        and messages[-1]["content"] == "小王：实名认证失败了怎么办"
    )


# -- the step, live ------------------------------------------------------------------------------


def test_an_llm_reply_replaces_the_template_on_the_command_and_its_event(generator: FakeGenerator) -> None:
    generator.answers["m1"] = GeneratedReply(
        "您好，实名认证请在账号设置里重新刷脸，客服电话 400-820-8820。", "fake-model", KB
    )
    generator.ready_ids.add("m1")
    step = live(generator)
    out = story(step)
    [draft] = generator.started
    assert (draft.asker, draft.question, draft.persona) == ("小王", "实名认证失败了怎么重新做", "service")
    assert [s.text for s in draft.context] == ["大家好，有问题随时问"]
    [cmd], [event], [record] = split(out)
    assert cmd.content == "@小王 您好，实名认证请在账号设置里重新刷脸，客服电话 400-820-8820。"
    assert event.data.content == cmd.content and event.data.reply == cmd.reply
    assert (cmd.reply.source, cmd.reply.persona, cmd.reply.model) == ("llm", "service", "fake-model")
    assert [p.passage_id for p in cmd.reply.passages] == [
        "kb_1"
    ] and cmd.reply.template_id == "tpl_after_sales_1"
    assert (record.operation, record.key, record.status, record.output) == (
        "reply",
        "cmd_m1",
        "ok",
        cmd.content,
    )
    assert event.data.persona == "service" and event.event_time == at(5)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (GeneratedReply(None, "fake-model", error="timeout"), "timeout"),
        (GeneratedReply(None, "fake-model", error="breaker_open"), "breaker_open"),
        (GeneratedReply("请加我微信 13812345678 私聊", "fake-model"), "phone_number"),
        (GeneratedReply("Sure, I will help you.", "fake-model"), "not_chinese"),
    ],
)
def test_any_failure_sends_the_template_and_records_why(
    generator: FakeGenerator, answer: GeneratedReply, reason: str
) -> None:
    generator.answers["m1"] = answer
    generator.ready_ids.add("m1")
    [cmd], [event], [record] = split(story(live(generator)))
    assert cmd == command("m1") and cmd.reply is None and event.data.content == cmd.content
    assert (record.status, record.detail["reason"], record.detail["source"]) == (
        "fallback",
        reason,
        "template",
    )


def test_a_late_answer_holds_its_command_and_event_never_the_flow(generator: FakeGenerator) -> None:
    generator.answers["m1"] = GeneratedReply("您好，马上为您处理。", "fake-model")
    step = live(generator)
    out = story(step)
    assert split(out) == ([], [], []) and set(step.held) == {"cmd_m1"}
    other = classified("m9", "在吗", "小张", seconds=6)
    assert step.on_item(other) == [other]  # everything else goes on
    generator.ready_ids.add("m1")
    tick = Tick(at(7))
    released = step.on_item(tick)
    assert released[0] == tick
    [cmd], [event], [record] = split(released)
    assert cmd.content == "@小王 您好，马上为您处理。" and released.index(cmd) < released.index(event)
    assert record.status == "ok" and not step.held


def test_a_step_holding_commands_asks_to_be_woken_and_releases_them_then(generator: FakeGenerator) -> None:
    generator.answers["m1"] = GeneratedReply("您好，马上为您处理。", "fake-model")
    step = live(generator)
    assert step.wake_after() is None  # nothing held: no wall-clock wake-ups
    story(step)
    assert step.wake_after() == WAKE_S and step.on_wake() == []  # not back yet
    generator.ready_ids.add("m1")
    [cmd], [event], [record] = split(step.on_wake())
    assert (
        cmd.content == "@小王 您好，马上为您处理。"
        and event.data.reply == cmd.reply
        and record.status == "ok"
    )
    assert step.wake_after() is None


def test_a_withdrawn_reply_uses_no_answer(generator: FakeGenerator) -> None:
    step = live(generator)
    step.on_item(classified("m1", "请问怎么扫码", "小王"))
    step.on_item(scheduled("m1"))
    withdrawn = ReplyWithdrawn.make(message_id="m1", reason="staff_stepped_in").at(at(2), SID)
    assert step.on_item(withdrawn) == [withdrawn] and not step.drafts


def test_other_commands_and_notices_pass_untouched(generator: FakeGenerator) -> None:
    notice = command("m1").model_copy(
        update={"cause": CommandCause(event="after_sales_notify", message_id="m1")}
    )
    assert live(generator).on_item(notice) == [notice]


def test_the_end_of_a_finite_input_lets_held_commands_go(generator: FakeGenerator) -> None:
    step = live(generator)
    story(step)
    [cmd], [event], [record] = split(step.on_eof())
    assert cmd == command("m1") and event.data.content == cmd.content and record.detail["reason"] == "timeout"


def test_a_restart_sends_the_held_commands_with_their_templates(generator: FakeGenerator) -> None:
    step = live(generator)
    story(step)
    snap = pickle.loads(pickle.dumps(step.snapshot()))
    resumed = ReplyWriterStep.restore(WriterPolicy(CONFIG), generator, Recordings(), snap)
    tick = Tick(at(10))
    out = resumed.on_item(tick)
    [cmd], [event], [record] = split(out)
    assert (
        cmd == command("m1") and event.data.content == cmd.content and record.detail["reason"] == "restarted"
    )
    assert out[-1] == tick


# -- the step, replayed --------------------------------------------------------------------------


def test_a_replay_from_the_recordings_sends_what_live_sent(generator: FakeGenerator) -> None:
    generator.answers["m1"] = GeneratedReply("您好，实名认证请在账号设置里重新刷脸。", "fake-model", KB)
    generator.ready_ids.add("m1")
    live_out = story(live(generator))
    recordings = Recordings(r for r in live_out if isinstance(r, LlmRecord))
    replayed = story(ReplyWriterStep(WriterPolicy(CONFIG), None, recordings))
    without_records = [x for x in live_out if not isinstance(x, LlmRecord)]
    assert replayed == without_records
    assert story(ReplyWriterStep(WriterPolicy(CONFIG), None, Recordings()))[-2:] == [
        command("m1"),
        created(command("m1")),
    ]
