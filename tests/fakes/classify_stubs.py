"""Stand-ins for the LLM classifier tests: a stub rule classifier, a message factory, a movable clock."""

from __future__ import annotations

from datetime import UTC, datetime

from worktool.models import Classification, Message

STAFF_COMMANDS = ("[暂停回复]", "[恢复回复]", "[已解决]", "[转人工]")


class StubRules:
    """Minimal rule classifier: sender type from a name roster, a fixed low-confidence type per sender."""

    DEFAULT_TYPES = {
        "user": "chat_daily",
        "staff": "staff_other",
        "assistant": "staff_other",
        "operator": "operator_other",
        "robot": None,
    }

    def __init__(self, roster: dict[str, str] | None = None) -> None:
        self.roster = roster or {"小助手机器人": "robot", "售后小王": "staff", "运营老李": "operator"}
        self.calls = 0

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        self.calls += 1
        return [self.classify(m) for m in messages]

    def classify(self, m: Message) -> Classification:
        sender = self.roster.get(m.sender_name, "user")
        command = next((c for c in STAFF_COMMANDS if c in m.text), None) if sender == "staff" else None
        return Classification(
            sender_type=sender,
            message_type=self.DEFAULT_TYPES[sender],
            confidence=0.3 if sender != "robot" else 1.0,
            reason="stub rules",
            decided_by="rules",
            staff_command=command,
        )


def make_message(i: int = 1, text: str = "你们到底什么时候结算？", sender: str = "张三") -> Message:
    return Message(
        message_id=f"msg-{i}",
        session_id="group:测试群",
        robot_id="robot-1",
        received_at=datetime(2025, 3, 1, 10, 0, i % 60, tzinfo=UTC),
        room_type=1,
        is_group=True,
        group_name="测试群",
        group_remark="",
        sender_name=sender,
        text=text,
        raw_text=text,
        text_type=1,
        content_kind="text",
        at_me=False,
        reply_target="测试群",
    )


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
