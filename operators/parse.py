"""Raw record -> canonical Message. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import re

from worktool.models import (
    GROUP_ROOM_TYPES,
    TEXT_TYPES,
    Message,
    MessageCallback,
    RawRecord,
    StrictMessageBody,
    session_id_for,
)

# "@name " prefixes/inline mentions in rawSpoken. WeCom puts a space (often U+2005) after the name.
_MENTION = re.compile(r"@([^\s@\u2005]+)")


def parse_mentions(raw_text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_MENTION.findall(raw_text)))


def reply_target(body: MessageCallback) -> str:
    """Group replies go to the robot's remark of the group when set (WorkTool requires the remark),
    else the group name; private replies go to the sender."""
    if body.roomType in GROUP_ROOM_TYPES:
        return body.groupRemark or body.groupName
    return body.receivedName


def fingerprint(session_id: str, sender: str, text_type: int, raw_text: str) -> str:
    """Content key of a message: the same message reported by several robots has the same one."""
    h = hashlib.blake2b(f"{session_id}\x1f{sender}\x1f{text_type}\x1f{raw_text}".encode(), digest_size=12)
    return h.hexdigest()


def message_id_for(fp: str, record: RawRecord) -> str:
    """Deterministic id (WorkTool sends none): content fingerprint + the first report's stamp,
    so a replay or a restart produces the same id and upserts stay idempotent."""
    h = hashlib.blake2b(f"{fp}\x1f{record.received_at.timestamp():.3f}".encode(), digest_size=10)
    return "m_" + h.hexdigest()


def parse_message(record: RawRecord) -> tuple[str, Message]:
    """Validate a raw "message" record. Returns (fingerprint, Message); raises ValueError /
    pydantic.ValidationError on a malformed body."""
    body: MessageCallback = (
        record.body  # type: ignore[assignment]  # a StrictMessageBody reads the same (MessageRecord)
        if isinstance(record.body, MessageCallback | StrictMessageBody)
        else MessageCallback.model_validate(record.body)
    )
    session_id = session_id_for(record.robot_id, body)
    is_group = body.roomType in GROUP_ROOM_TYPES
    if is_group and not (body.groupName or body.groupRemark):
        raise ValueError("group message without groupName or groupRemark")
    raw_text = body.rawSpoken or body.spoken
    # Non-text messages often carry an empty `spoken`; the file payload stays out of the fingerprint
    # but its length keeps two different images from collapsing into one.
    content_key = (
        raw_text if body.textType == 1 or raw_text else f"<{body.textType}:{len(body.fileBase64 or '')}>"
    )
    fp = fingerprint(session_id, body.receivedName, body.textType, content_key)
    msg = Message(
        message_id=message_id_for(fp, record),
        session_id=session_id,
        robot_id=record.robot_id,
        received_at=record.received_at,
        room_type=body.roomType,
        is_group=is_group,
        group_name=body.groupName,
        group_remark=body.groupRemark,
        sender_name=body.receivedName,
        text=body.spoken,
        raw_text=raw_text,
        text_type=body.textType,
        content_kind=TEXT_TYPES.get(body.textType, "unknown"),
        at_me=body.atMe,
        mentions=parse_mentions(raw_text),
        reply_target=reply_target(body),
        has_file=bool(body.fileBase64),
    )
    return fp, msg
