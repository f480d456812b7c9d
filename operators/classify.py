"""Classification entry point used by the dataflow.

`Classifier.classify_batch` takes every message of one dataflow batch, so an implementation that calls
an LLM can run the calls concurrently. The rule classifier is the always-available path.
"""

from __future__ import annotations

from typing import Protocol

from operators.rules import MessageTypeRules
from operators.sender import SenderResolver
from operators.sentiment import SentimentScorer
from worktool.config import BusinessConfig
from worktool.models import Classification, Message


class Classifier(Protocol):
    def classify_batch(self, messages: list[Message]) -> list[Classification]: ...


class RuleClassifier:
    """Sender type (docs/rules.md §1), message type with confidence and reason (§2), sentiment, need_reply
    (§5) and staff commands, by rules only. Pure; everything is compiled once here."""

    def __init__(self, config: BusinessConfig) -> None:
        self.senders = SenderResolver(config)
        self.sentiment = SentimentScorer(config.classifier)
        # One scan per message serves the type rules and the sentiment lexicon.
        self.types = MessageTypeRules(config, self.senders, extra_keywords=self.sentiment.keywords)

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        return [self.classify(m) for m in messages]

    def classify(self, m: Message) -> Classification:
        sender_type, sender_reason = self.senders.resolve(m.sender_name, m.room_type)
        d = self.types.decide(m, sender_type)
        if sender_type == "robot":
            sentiment = None
        elif d.hits is None:  # nothing was read (media, empty text)
            sentiment = 0.0
        else:
            sentiment = self.sentiment.score_hits(d.text, d.hits)
        return Classification(
            sender_type=sender_type,
            message_type=d.message_type,
            confidence=d.confidence,
            reason=f"{sender_reason}; {d.reason}",
            decided_by="rules",
            sentiment=sentiment,
            need_reply=d.need_reply,
            staff_command=d.staff_command,
        )


def classification_fields(message_id: str, c: Classification) -> dict[str, object]:
    """The classification as published: one shape for `worktool classify` and `message_classified`."""
    return {
        "message_id": message_id,
        "sender_type": c.sender_type,
        "message_type": c.message_type,
        "confidence": c.confidence,
        "reason": c.reason,
        "decided_by": c.decided_by,
        "staff_command": c.staff_command,
        "sentiment": c.sentiment,
        "need_reply": c.need_reply,
    }
