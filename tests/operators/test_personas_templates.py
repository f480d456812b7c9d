"""Personas and the template catalogue (issue 16 parts 1-2): the shipped data loads and renders, a bad
template fails at load, the persona of a robot, the variant drawn per message (reproducible, varied),
configured templates winning, the persona's emoji and length policy, old timer payloads."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from operators.personas import select_persona
from operators.replies import CatalogueReplies, PlannedSend, ReplyPlanner, ReplyRequest
from worktool.catalogue import (
    PLACEHOLDER,
    CatalogueError,
    apply_emoji_policy,
    parse_catalogue,
    preset_personas,
    shipped_catalogue,
)
from worktool.config import BusinessConfig, RobotConfig
from worktool.models import Classification, Message

SEVEN = {
    "community",
    "service",
    "conversion",
    "tech_support",
    "product_info",
    "customer_relation",
    "assistant",
}
DAY = datetime(2026, 2, 10, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
NIGHT = datetime(2026, 2, 10, 15, 0, tzinfo=UTC)  # 23:00


def test_seven_personas_and_over_a_hundred_templates_in_24_categories() -> None:
    personas, catalogue = preset_personas(), shipped_catalogue()
    assert set(personas) == SEVEN
    assert all(p.system_prompt and p.tone and p.max_reply_chars > 0 for p in personas.values())
    assert len(catalogue.templates) >= 100
    assert len(catalogue.categories) == 24
    assert set(Counter(catalogue.category_code(t.category) for t in catalogue.templates)) == {
        c.code for c in catalogue.categories
    }


@pytest.mark.parametrize("template", shipped_catalogue().templates, ids=lambda t: t.id)
def test_every_template_renders_with_its_declared_variables(template) -> None:
    catalogue = shipped_catalogue()
    values = {name: catalogue.variables[name].sample for name in template.variables}
    text = template.render(values)
    assert text.strip() and "{{" not in text and "}}" not in text
    assert set(PLACEHOLDER.findall(template.text)) == set(template.variables)
    assert all(v in text for v in values.values())


def _catalogue(text: str, variables: list[str]) -> dict:
    data = yaml.safe_load(
        """
categories: [{code: general, name: 通用回复}]
variables: {user: {source: message, description: 号主, sample: 张三}}
"""
    )
    data["templates"] = [
        {"id": "tpl_x", "category": "general", "name": "x", "text": text, "variables": variables}
    ]
    return data


@pytest.mark.parametrize(
    ("text", "variables", "problem"),
    [
        ("您好{{nope}}", ["nope"], "unknown variable"),
        ("您好{{user}}", [], "undeclared"),
        ("您好", ["user"], "does not use"),
        ("您好{{ 1x }}", [], "malformed"),
    ],
)
def test_a_bad_variable_fails_at_load(text: str, variables: list[str], problem: str) -> None:
    with pytest.raises(CatalogueError, match=problem):
        parse_catalogue(_catalogue(text, variables))
    assert parse_catalogue(_catalogue("您好{{user}}", ["user"])).templates[0].id == "tpl_x"


def test_an_unknown_persona_or_message_type_fails_at_load() -> None:
    data = _catalogue("您好", [])
    data["templates"][0]["personas"] = ["nobody"]
    with pytest.raises(CatalogueError, match="unknown persona"):
        parse_catalogue(data, personas=SEVEN)
    data = _catalogue("您好", [])
    data["templates"][0]["message_types"] = ["chat_whatever"]
    with pytest.raises(CatalogueError, match="unknown message type"):
        parse_catalogue(data)


def test_a_robot_gets_its_explicit_persona_else_by_group_else_by_role_else_the_default() -> None:
    config = BusinessConfig.model_validate({"personas": {"by_group": {"大客户": "customer_relation"}}})
    p = config.personas

    def robot(**kw) -> RobotConfig:
        return RobotConfig(robot_id="r", name="R", **{"role": "reply_day", **kw})

    assert select_persona(robot(persona="tech_support", group="社群"), p) == "tech_support"
    assert select_persona(robot(group="社群"), p) == "community"
    assert select_persona(robot(group="营销"), p) == "conversion"
    assert select_persona(robot(group="技术支持"), p) == "tech_support"
    assert select_persona(robot(group="大客户"), p) == "customer_relation"  # configured over the defaults
    assert select_persona(robot(group="product_info"), p) == "product_info"  # a persona's code
    assert select_persona(robot(group="没有这个组"), p) == "assistant"
    assert select_persona(robot(role="notify"), p) == "service"
    assert select_persona(robot(), p) == "assistant"
    assert select_persona(None, p) == "assistant"
    with pytest.raises(ValueError, match="unknown persona"):
        BusinessConfig.model_validate(
            {"robots": [{"robot_id": "r", "name": "R", "role": "reply_day", "persona": "x"}]}
        )


def _request(message_id: str, kind: str = "chat_daily", persona: str = "assistant", shift: str = "day",
             scenario: str = "day_shift_operation", text: str = "在吗") -> ReplyRequest:  # fmt: skip
    return ReplyRequest(
        kind, message_id, scenario, shift, persona, user="张三", group="号主3群", text=text, robot="小A"
    )


def test_the_variant_is_drawn_by_the_message_id_reproducibly_and_varies() -> None:
    writer = CatalogueReplies(BusinessConfig())
    again = CatalogueReplies(BusinessConfig())
    replies = [writer.compose(_request(f"m{i}")) for i in range(60)]
    assert replies == [again.compose(_request(f"m{i}")) for i in range(60)]
    assert len({r.template_id for r in replies}) >= 2 and len({r.text for r in replies}) >= 2
    assert all(r.persona == "assistant" and r.template_id.startswith("tpl_greeting_") for r in replies)


def test_selection_by_persona_scenario_and_shift() -> None:
    writer = CatalogueReplies(BusinessConfig())
    catalogue = shipped_catalogue()

    def ids(**kw) -> set[str]:
        return {writer.compose(_request(f"m{i}", **kw)).template_id for i in range(80)}

    night = ids(shift="night", scenario="night_shift_operation", persona="service")
    assert night == {"tpl_general_04", "tpl_general_05"}  # service has no chat_daily of its own
    assert ids(persona="service", kind="chat_complaint", scenario="urgent") == {
        "tpl_complaint_04", "tpl_complaint_05", "tpl_complaint_06"
    }  # fmt: skip
    generic = ids(persona="assistant", kind="chat_complaint", scenario="urgent")
    assert generic == {"tpl_complaint_01", "tpl_complaint_02", "tpl_complaint_03"}
    assert all("抱歉" in catalogue.by_id(i).text for i in generic)
    community_night = ids(persona="community", shift="night", scenario="night_shift_operation")
    assert community_night == {"tpl_chat_03", "tpl_chat_04"}
    notices = ids(kind="after_sales_notify", scenario="after_sales_notify", persona="service")
    assert notices == {"tpl_handover_01", "tpl_handover_02", "tpl_handover_03"}


def test_a_configured_template_wins_and_catalogue_false_keeps_the_configured_ones() -> None:
    config = BusinessConfig.model_validate(
        {"replies": {"templates": {"chat_daily": "{{user}}您好，{{robot}}在"}}}
    )
    writer = CatalogueReplies(config)
    reply = writer.compose(_request("m1"))
    assert (reply.text, reply.template_id, reply.persona) == (
        "张三您好，小A在",
        "config:chat_daily",
        "assistant",
    )
    assert writer.compose(_request("m1", kind="chat_complaint", scenario="urgent")).template_id.startswith(
        "tpl_complaint_"
    )
    off = CatalogueReplies(BusinessConfig.model_validate({"replies": {"catalogue": False}}))
    assert off.compose(_request("m1")).text == BusinessConfig().replies.templates["chat_daily"]
    assert off.compose(_request("m1")).template_id == "config:chat_daily"


def test_the_personas_emoji_policy_and_length_limit() -> None:
    assert apply_emoji_policy("太棒了！👍 有问题喊我 ✨", "none") == "太棒了！有问题喊我"
    assert apply_emoji_policy("太棒了！👍 有问题喊我 ✨", "light") == "太棒了！👍 有问题喊我"
    assert apply_emoji_policy("太棒了！👍 有问题喊我 ✨", "rich") == "太棒了！👍 有问题喊我 ✨"
    short = BusinessConfig.model_validate(
        {"personas": {"overrides": {"community": {"emoji": "none", "max_reply_chars": 18}}}}
    )
    writer = CatalogueReplies(short)
    for i in range(40):
        reply = writer.compose(_request(f"m{i}", persona="community"))
        assert len(reply.text) <= 18 and not any(ord(ch) >= 0x1F000 for ch in reply.text)
    # a notice relays the owner's words to staff whole
    long_text = "扫码" * 90
    notice = writer.compose(
        _request("m1", kind="after_sales_notify", scenario="after_sales_notify", text=long_text)
    )
    assert long_text in notice.text


def _message(message_id: str, at: datetime, text: str = "在吗") -> Message:
    return Message(
        message_id=message_id, session_id="group:号主3群", robot_id="wt_day", received_at=at, is_group=True, room_type=1,
        group_name="号主3群", group_remark="", sender_name="张三", text=text, raw_text=text, text_type=1,
        content_kind="text", at_me=False, mentions=(), reply_target="号主3群",
    )  # fmt: skip


def test_the_planner_records_persona_and_template_and_old_payloads_restore() -> None:
    config = BusinessConfig.model_validate(
        {"robots": [{"robot_id": "wt_day", "name": "小A", "role": "reply_day", "group": "社群"},
                    {"robot_id": "wt_notify", "name": "通知", "role": "notify"}]}
    )  # fmt: skip
    planner = ReplyPlanner(config)
    c = Classification(
        sender_type="user", message_type="chat_daily", confidence=0.9, reason="t", need_reply=True
    )
    plan = planner.plan_reply(_message("m1", DAY), c, {"wt_day"}, [], False, False)
    assert isinstance(plan, PlannedSend)
    assert plan.persona == "community" and plan.template_id.startswith("tpl_chat_")
    assert plan.content.startswith("@张三 ")
    assert PlannedSend.from_payload(plan.payload()) == plan
    old = plan.payload()[:11]  # a timer written before personas
    restored = PlannedSend.from_payload(old)
    assert restored.persona is None and restored.template_id is None and restored.content == plan.content
    notice = planner.plan_notice(_message("m2", DAY + timedelta(minutes=1), "扫码失败"))
    assert notice.persona == "service" and notice.template_id.startswith("tpl_handover_")
    assert "张三" in notice.content and "扫码失败" in notice.content
