"""Classification: the rule classifier (operators/classify.py), or an LLM on top of it when
WORKTOOL_LLM_PROVIDER is set (classifiers/llm/). This package holds the parts that do network I/O, so it
sits above operators/, which stays pure.

A configured LLM that cannot be built is an error at start-up: a live deployment that silently
classified with less than it was told to would say nothing about it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators.classify import Classifier, RuleClassifier
from worktool.config import BusinessConfig
from worktool.events import AiCall, MonitorEvent
from worktool.settings import Settings


class ClassifierUnavailable(RuntimeError):
    """The configured classifier cannot run (missing module, bad provider settings)."""


def build_classifier(settings: Settings, config: BusinessConfig) -> Classifier:
    """RuleClassifier, wrapped by classifiers.llm.LLMClassifier when an LLM provider is configured."""
    rules = RuleClassifier(config)
    if not settings.llm_provider:
        return rules
    try:
        from classifiers.llm import LLMClassifier
    except ImportError as e:
        raise ClassifierUnavailable(
            f"WORKTOOL_LLM_PROVIDER={settings.llm_provider} but the LLM classifier cannot be imported: {e}"
        ) from e
    try:
        return LLMClassifier(rules, settings)
    except ValueError as e:
        raise ClassifierUnavailable(f"LLM classifier misconfigured: {e}") from e


def close_classifier(classifier: Classifier) -> None:
    close = getattr(classifier, "close", None)
    if callable(close):
        close()


def call_log_events(classifier: Classifier) -> Callable[[], list[MonitorEvent]] | None:
    """A drain of the classifier's LLM call logs as `ai_call` monitor events, or None if it keeps none."""
    drain = getattr(classifier, "drain_call_logs", None)
    if drain is None:
        return None
    return lambda: [ai_call_event(c) for c in drain()]


def ai_call_event(call: dict[str, Any]) -> MonitorEvent:
    """An LLM call log as a monitor event, stamped with its message's event time."""
    data = {k: v for k, v in call.items() if k not in ("event_time", "session_id", "robot_id")}
    return AiCall.event(
        event_time=call["event_time"],
        session_id=call.get("session_id"),
        robot_id=call.get("robot_id"),
        **data,
    )


__all__ = [
    "ClassifierUnavailable",
    "ai_call_event",
    "build_classifier",
    "call_log_events",
    "close_classifier",
]
