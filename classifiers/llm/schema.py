"""What the LLM must answer, and the message-type codes it may choose from (docs/rules.md §2).

The answer is validated strictly: anything that is not a JSON object of this shape, or names a code
outside the sender's category, is an invalid answer and the rule result stands.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worktool.models import SenderType

# code -> one-line meaning (Chinese, for the prompt), per sender category; docs/rules.md §2.
USER_TYPES: dict[str, str] = {
    "chat_after_sales": "需要扫码、绑定手机、实名认证、主播验证，或为申诉拍摄自拍视频等售后事项",
    "chat_complaint": "不满、抱怨、指责我们，威胁投诉或举报",
    "chat_private_operation": "号主擅自操作：自己上架商品、删除或发布视频",
    "chat_cooperation": "配合我们的要求：发视频、拍自拍视频、确认自己在（如“在”“来了”）",
    "chat_complain_discuss": "号主之间互相吐槽、怀疑、议论，不是对我们说的",
    "chat_daily": "问候、闲聊、普通咨询（结算、佣金、排期等）",
    "chat_other": "其他",
}
STAFF_TYPES: dict[str, str] = {
    "staff_at_user": "@号主布置任务或提醒",
    "staff_reply_user": "回答号主的问题",
    "staff_ask_user": "向号主询问情况",
    "staff_other": "其他",
}
OPERATOR_TYPES: dict[str, str] = {
    "operator_tone_hard": "语气强硬：马上、必须、立刻、快点、别废话、听不懂吗、辱骂，或两个以上“！”",
    "operator_assign_user": "给号主安排工作",
    "operator_other": "其他",
}

# Assistants speak with the staff codes; robots are never classified.
_TYPES_BY_SENDER: dict[str, dict[str, str]] = {
    "user": USER_TYPES,
    "staff": STAFF_TYPES,
    "assistant": STAFF_TYPES,
    "operator": OPERATOR_TYPES,
}


def types_for(sender_type: SenderType) -> dict[str, str]:
    """The codes (with meanings) a sender of this type may get; empty for robots."""
    return _TYPES_BY_SENDER.get(sender_type, {})


class LLMVerdict(BaseModel):
    """The JSON object the model must return (sender type is not asked: it comes from the roster)."""

    model_config = ConfigDict(extra="ignore")

    message_type: str
    confidence: float = Field(ge=0.0, le=1.0)
    reason: str = ""
    sentiment: float = Field(ge=-1.0, le=1.0)
    need_reply: bool
    # Asked only of a staff or assistant message answering an owner's open question (docs/rules.md §3).
    reply_quality: float | None = Field(default=None, ge=0.0, le=1.0)


class InvalidAnswer(ValueError):
    """The model answered, but not with a usable verdict."""


def _json_object_text(raw: str) -> str:
    # Models without a JSON mode like to wrap the object in ```json fences or a sentence; take the
    # outermost braces. Anything still not parseable is invalid.
    start, end = raw.find("{"), raw.rfind("}")
    if start == -1 or end < start:
        raise InvalidAnswer("no JSON object in the answer")
    return raw[start : end + 1]


def parse_verdict(raw: str | None, sender_type: SenderType) -> LLMVerdict:
    """Validate the model's text for a sender of `sender_type`; raise InvalidAnswer otherwise."""
    if not raw or not raw.strip():
        raise InvalidAnswer("empty answer")
    try:
        data = json.loads(_json_object_text(raw))
    except json.JSONDecodeError as e:
        raise InvalidAnswer(f"malformed JSON: {e.msg}") from e
    if not isinstance(data, dict):
        raise InvalidAnswer("answer is not a JSON object")
    try:
        verdict = LLMVerdict.model_validate(data)
    except ValidationError as e:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "(root)" for err in e.errors())
        raise InvalidAnswer(f"schema violation: {fields}") from e
    if verdict.message_type not in types_for(sender_type):
        raise InvalidAnswer(f"message_type {verdict.message_type!r} is not valid for a {sender_type}")
    return verdict
