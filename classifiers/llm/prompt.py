"""Every prompt the classifier sends lives here.

The system prompt describes the business and lists only the codes valid for the sender's category, so a
well-behaved model cannot pick a code of another category. The user turn carries the message and the rule
classifier's result as a hint. A staff or assistant message answering an owner's open question
(operators/quality.py) carries the question too, and the model also scores the answer (`reply_quality`).
"""

from __future__ import annotations

import json

from classifiers.llm.schema import types_for
from worktool.models import Classification, Message

# Long messages are cut: the type is decided by the gist, and tokens cost money.
MAX_TEXT_CHARS = 1500

_SENDER_LABELS = {
    "user": "号主（用户）",
    "staff": "售后人工客服",
    "assistant": "群助理（按售后人工处理）",
    "operator": "运营 / 老板",
}

_BUSINESS = (
    "你是一家视频号代运营公司的企业微信群消息分类助手。\n"
    "业务背景：公司替视频号的号主（账号持有人，群里的用户）运营账号。每个客户群里有号主、"
    "售后人工客服（负责扫码、绑定手机、实名认证、申诉等售后事项）、运营（安排号主的工作）和我们的机器人。\n"
    "你的任务：判断一条群消息属于哪一种消息类型，并给出置信度、简短理由、情绪倾向，以及这条消息是否需要我们回复。"
)

_NEED_REPLY = {
    "user": "need_reply：号主是否在向我们（客服或机器人）提问或提出请求、需要我们回复；号主之间的闲聊或吐槽为 false。",
    "staff": "need_reply：人工客服的消息不需要机器人回复，一般为 false。",
    "assistant": "need_reply：群助理的消息不需要机器人回复，一般为 false。",
    "operator": "need_reply：运营的消息一般为 false；若语气强硬、需要安抚号主则为 true。",
}

_OUTPUT = (
    "只输出一个 JSON 对象，不要输出任何其他文字、解释或代码块标记。格式：\n"
    '{"message_type": "<上面列出的代码之一>", "confidence": <0到1的小数>, '
    '"reason": "<不超过40字的中文理由>", "sentiment": <-1到1的小数，-1最负面，1最正面>, '
    '"need_reply": <true或false>}'
)


_QUALITY = (
    "这条客服消息是在回答号主的问题（见“号主的问题”）。请另外给出 reply_quality：这条回答的质量，0到1的小数。"
    "敷衍、推脱（让号主问别人、自己查、说不归自己管）、反问或指责号主、答非所问、只有“嗯”“哦”“好”、"
    "只有@或表情，都低于0.5；给出步骤、解释原因、承诺处理时间、切实回应了问题的，不低于0.5。"
)
_QUALITY_OUTPUT = (
    "只输出一个 JSON 对象，不要输出任何其他文字、解释或代码块标记。格式：\n"
    '{"message_type": "<上面列出的代码之一>", "confidence": <0到1的小数>, '
    '"reason": "<不超过40字的中文理由>", "sentiment": <-1到1的小数，-1最负面，1最正面>, '
    '"need_reply": <true或false>, "reply_quality": <0到1的小数>}'
)


def system_prompt(sender_type: str, scores_reply: bool = False) -> str:
    codes = "\n".join(f"- {code}：{meaning}" for code, meaning in types_for(sender_type).items())
    quality = f"{_QUALITY}\n\n" if scores_reply else ""
    return (
        f"{_BUSINESS}\n\n"
        f"这条消息的发送者是：{_SENDER_LABELS[sender_type]}。message_type 只能从下面的代码中选择：\n"
        f"{codes}\n\n"
        f"{_NEED_REPLY[sender_type]}\n\n"
        f"{quality}"
        f"{_QUALITY_OUTPUT if scores_reply else _OUTPUT}"
    )


def user_prompt(message: Message, rule: Classification, question: str | None = None) -> str:
    text = message.text if len(message.text) <= MAX_TEXT_CHARS else message.text[:MAX_TEXT_CHARS] + "…"
    facts = {
        "群名": (message.group_name or message.group_remark) if message.is_group else "（私聊）",
        "发送者": message.sender_name,
        "发送者类型": rule.sender_type,
        "消息形式": message.content_kind,
        "是否@了机器人": message.at_me,
        "@的人": list(message.mentions),
        "消息内容": text,
        "规则分类结果（仅供参考）": {
            "message_type": rule.message_type,
            "confidence": rule.confidence,
            "reason": rule.reason,
        },
    }
    if question is not None:
        facts["号主的问题"] = question
    return "请对下面这条消息分类：\n" + json.dumps(facts, ensure_ascii=False, indent=1)


def build_messages(
    message: Message, rule: Classification, question: str | None = None
) -> list[dict[str, str]]:
    """Chat messages for one classification call (also what the AI I/O log records as `input`);
    `question`: the owner's open question a staff message answers, which asks for its reply_quality."""
    return [
        {"role": "system", "content": system_prompt(rule.sender_type, question is not None)},
        {"role": "user", "content": user_prompt(message, rule, question)},
    ]
