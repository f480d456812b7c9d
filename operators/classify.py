"""Classification entry point used by the dataflow.

`Classifier.classify_batch` takes every message of one dataflow batch, so an implementation that calls
an LLM can run the calls concurrently. The rule classifier is the always-available path.
"""

from __future__ import annotations

from typing import Protocol

from worktool.config import BusinessConfig
from worktool.models import Classification, Message


class Classifier(Protocol):
    def classify_batch(self, messages: list[Message]) -> list[Classification]: ...


class PlaceholderClassifier:
    """Foundation stand-in: recognises our own robots' echoes, everything else is a user's chat_other."""

    def __init__(self, config: BusinessConfig) -> None:
        self._robot_names = config.robot_names

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        return [self._one(m) for m in messages]

    def _one(self, m: Message) -> Classification:
        if m.sender_name in self._robot_names:
            return Classification(
                sender_type="robot", message_type=None, confidence=1.0, reason="robot echo",
                decided_by="placeholder",
            )
        return Classification(
            sender_type="user", message_type="chat_other", confidence=0.0, reason="placeholder",
            decided_by="placeholder",
        )
