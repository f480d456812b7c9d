"""Classification entry point used by the dataflow.

`Classifier.classify_batch` takes every message of one dataflow batch, so an implementation that calls
an LLM can run the calls concurrently. The rule classifier is the always-available path.
"""

from __future__ import annotations

from typing import Protocol

from operators.rules import TEXT_KINDS, MessageTypeRules
from operators.sender import SenderResolver
from operators.sentiment import SentimentScorer
from worktool.config import BusinessConfig
from worktool.models import INTERNAL_ROOM_TYPES, Classification, Message, SenderType


class Classifier(Protocol):
    def classify_batch(self, messages: list[Message]) -> list[Classification]: ...


CACHE_SIZE = 8192  # owners' texts kept with their classification
CACHE_MAX_CHARS = 256  # longer texts rarely repeat and would make the cache large (8192 x 256: ~10 MB)


class RuleClassifier:
    """Sender type (docs/rules.md §1), message type with confidence and reason (§2), sentiment, need_reply
    (§5) and staff commands, by rules only. Pure; everything is compiled once here.

    An owner's text message is classified from its text, its @-mentions (who they are), `at_me`, the
    room kind and the sender's resolution only, so its (frozen) classification is kept in a bounded LRU
    keyed by exactly those: group chats repeat "好的", "收到", "在的" all day. Only texts up to
    CACHE_MAX_CHARS characters are kept (memory stays bounded whatever the texts). `cache_size=0` turns it
    off; tests/operators/test_classify_cache.py shows both give identical results on the labelled sets.
    """

    def __init__(self, config: BusinessConfig, cache_size: int = CACHE_SIZE) -> None:
        self.senders = SenderResolver(config)
        self.sentiment = SentimentScorer(config.classifier)
        # One scan per message serves the type rules and the sentiment lexicon.
        self.types = MessageTypeRules(config, self.senders, extra_keywords=self.sentiment.keywords)
        self.cache_size = cache_size
        self._cache: dict[tuple[object, ...], Classification] = {}

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        return [self.classify(m) for m in messages]

    def classify(self, m: Message) -> Classification:
        sender_type, sender_reason = self.senders.resolve(m.sender_name, m.room_type)
        text = m.text or m.raw_text
        if (
            sender_type != "user"
            or m.text_type not in TEXT_KINDS
            or not self.cache_size
            or len(text) > CACHE_MAX_CHARS
        ):
            return self._classify(m, sender_type, sender_reason)
        # Everything MessageTypeRules._user_type and the sentiment read of the message (text_of: the
        # text and the mentions; addressees: the mentions and whether the room is internal).
        key = (text, m.mentions, m.room_type in INTERNAL_ROOM_TYPES, m.at_me, sender_reason)
        cache = self._cache
        c = cache.pop(key, None)  # popped and put back: the most recently used are last
        if c is None:
            c = self._classify(m, sender_type, sender_reason)
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]  # the least recently used
        cache[key] = c
        return c

    def _classify(self, m: Message, sender_type: SenderType, sender_reason: str) -> Classification:
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
