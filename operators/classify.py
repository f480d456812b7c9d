"""Classification entry point used by the dataflow.

`Classifier.classify_batch` takes every message of one dataflow batch, so an implementation that calls
an LLM can run the calls concurrently. The rule classifier is the always-available path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from operators.rules import TEXT_KINDS, MessageTypeRules, TypeDecision
from operators.sender import SenderResolver
from operators.sentiment import SentimentScorer
from operators.type_model import SENDER_FAMILY, ModelInput, TypeModel
from worktool.config import BusinessConfig
from worktool.models import INTERNAL_ROOM_TYPES, Classification, Message, SenderType


class Classifier(Protocol):
    def classify_batch(self, messages: list[Message]) -> list[Classification]: ...


CACHE_SIZE = 8192  # owners' texts kept with their classification
CACHE_MAX_CHARS = 256  # longer texts rarely repeat and would make the cache large (8192 x 256: ~10 MB)


class RuleClassifier:
    """Sender type (docs/rules.md §1), message type with confidence and reason (§2), sentiment, need_reply
    (§5) and staff commands: by the rules, and with a trained model (`model`, operators/type_model.py) on
    top of them for the texts of people. Pure; everything is compiled once here.

    A person's text message is classified from its text, its @-mentions (who they are), `at_me`, the
    room and the sender's resolution only, so its (frozen) classification is kept in a bounded LRU
    keyed by exactly those: group chats repeat "好的", "收到", "在的" all day, staff their set phrases. Only texts up to
    CACHE_MAX_CHARS characters are kept (memory stays bounded whatever the texts). `cache_size=0` turns it
    off; tests/operators/test_classify_cache.py shows both give identical results on the labelled sets.
    """

    def __init__(
        self, config: BusinessConfig, cache_size: int = CACHE_SIZE, model: TypeModel | None = None
    ) -> None:
        self.model = model
        self.senders = SenderResolver(config)
        self.sentiment = SentimentScorer(config.classifier)
        # One scan per message serves the type rules and the sentiment lexicon.
        self.types = MessageTypeRules(config, self.senders, extra_keywords=self.sentiment.keywords)
        self.cache_size = cache_size
        self._cache: dict[tuple[object, ...], Classification] = {}

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        """Each message by the rules; those the model types (`model_reads`) are typed together at the end,
        in one call, so the model's fixed cost is paid once a batch. A message's classification depends
        on that message alone, not on the batch it came in (tests/operators/test_classify_cache.py)."""
        out: list[Classification | None] = [None] * len(messages)
        waiting: list[tuple[int, Message, SenderType, str, TypeDecision, tuple | None]] = []
        for i, m in enumerate(messages):
            sender_type, sender_reason = self.senders.resolve(m.sender_name, m.room_type)
            key = self._cache_key(m, sender_type, sender_reason)
            if key is not None and (cached := self._cached(key)) is not None:
                out[i] = cached
                continue
            d = self.types.decide(m, sender_type)
            if self.model is not None and self.model_reads(m, sender_type, d):
                waiting.append((i, m, sender_type, sender_reason, d, key))
                continue
            out[i] = self._remember(key, self._classification(m, sender_type, sender_reason, d, "rules"))
        if waiting:
            assert self.model is not None
            answers = self.model.predict_batch([self.model_input(m, st, d) for _, m, st, _, d, _ in waiting])
            for (i, m, st, why, d, key), (code, p) in zip(waiting, answers, strict=True):
                typed = self._model_decision(m, st, d, code, p)
                out[i] = self._remember(key, self._classification(m, st, why, typed, "model"))
        return out  # type: ignore[return-value]  # every slot is filled above

    def classify(self, m: Message) -> Classification:
        return self.classify_batch([m])[0]

    def _cache_key(self, m: Message, sender_type: SenderType, sender_reason: str) -> tuple | None:
        text = m.text or m.raw_text
        if (
            sender_type == "robot"
            or m.text_type not in TEXT_KINDS
            or not self.cache_size
            or len(text) > CACHE_MAX_CHARS
        ):
            return None
        # Everything the rules, the model and the sentiment lexicon read of a message besides its sender's
        # name: the text, the mentions (who they are), at_me, the room, and who the sender is.
        return (text, m.mentions, m.at_me, sender_type, sender_reason, m.room_type)

    def _cached(self, key: tuple) -> Classification | None:
        c = self._cache.pop(key, None)  # popped and put back: the most recently used are last
        if c is not None:
            self._cache[key] = c
        return c

    def _remember(self, key: tuple | None, c: Classification) -> Classification:
        if key is not None:
            cache = self._cache
            cache.pop(key, None)
            if len(cache) >= self.cache_size:
                del cache[next(iter(cache))]  # the least recently used
            cache[key] = c
        return c

    def _classification(
        self, m: Message, sender_type: SenderType, sender_reason: str, d: TypeDecision, decided_by: str
    ) -> Classification:
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
            decided_by=decided_by,
            sentiment=sentiment,
            need_reply=d.need_reply,
            staff_command=d.staff_command,
        )

    # -----------------------------------------------------------------------------------------------
    # docs/rules.md §2 "Rules and the trained model": the rules keep what is structure (robots, media,
    # empty text, colleagues' talk in internal rooms, staff commands); the model types every other text
    # of a person.

    def model_reads(self, m: Message, sender_type: SenderType, d: TypeDecision) -> bool:
        if sender_type == "robot" or d.hits is None or not d.text.strip():
            return False
        return not (sender_type != "user" and m.room_type in INTERNAL_ROOM_TYPES)

    def _model_decision(
        self, m: Message, sender_type: SenderType, d: TypeDecision, code: str, p: float
    ) -> TypeDecision:
        need_reply = self.types.need_reply(code, d.flags, m) if sender_type == "user" else False
        reason = f"model {p:.2f} (rules: {d.message_type} {d.confidence:.2f}, {d.reason})"
        return replace(d, message_type=code, confidence=round(p, 4), reason=reason, need_reply=need_reply)

    def model_input(self, m: Message, sender_type: SenderType, d: TypeDecision) -> ModelInput:
        """What the model reads of a message the rules have read (also used to train it)."""
        return ModelInput(
            text=d.text,
            family=SENDER_FAMILY[sender_type],
            owner_mentioned=bool(self.types.owner_mentions(m)),
            any_mention=bool(m.mentions),
            at_me=m.at_me,
            room_type=m.room_type,
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
        "reply_quality": c.reply_quality,
        "reply_quality_source": None if c.reply_quality is None else "llm",
        "reply_quality_reason": None,
    }
