"""Classification: the rule classifier (operators/classify.py), or an LLM on top of it when
WORKTOOL_LLM_PROVIDER is set (classifiers/llm/). This package holds the parts that do network I/O, so it
sits above operators/, which stays pure.

A configured LLM that cannot be built is an error at start-up: a live deployment that silently
classified with less than it was told to would say nothing about it.

A replay never asks a provider (`build_replay_classifier`): it applies the live run's recorded answers
(classifiers/llm/recorded.py), or runs the local classifier alone when the archive holds none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from operators.classify import Classifier, RuleClassifier
from operators.recordings import Recordings
from operators.reply_writer import ReplyGenerator
from operators.type_model import ModelFileError, TypeModel
from worktool.config import BusinessConfig
from worktool.events import AiCall, MonitorEvent
from worktool.models import LlmRecord
from worktool.settings import Settings


class ClassifierUnavailable(RuntimeError):
    """The configured classifier cannot run (missing module, bad provider settings)."""


BUILTIN_MODEL = Path(__file__).resolve().parent / "data" / "message_type_model.npz"
_loaded: dict[tuple[Path, float], TypeModel] = {}


def load_type_model(setting: str) -> TypeModel | None:
    """The message-type model of WORKTOOL_CLASSIFIER_MODEL ("builtin", "off" or a path), loaded once per
    file (and again when the file changes)."""
    if setting.strip().lower() == "off":
        return None
    path = BUILTIN_MODEL if setting.strip().lower() == "builtin" else Path(setting).expanduser()
    try:
        key = (path.resolve(), path.stat().st_mtime)
        if key not in _loaded:
            _loaded.clear()
            _loaded[key] = TypeModel.load(path)
        return _loaded[key]
    except (OSError, ModelFileError) as e:
        raise ClassifierUnavailable(
            f"WORKTOOL_CLASSIFIER_MODEL={setting}: cannot load the message-type model ({e}); "
            "`worktool train` rebuilds it, WORKTOOL_CLASSIFIER_MODEL=off runs the rules alone"
        ) from e


def build_classifier(settings: Settings, config: BusinessConfig) -> Classifier:
    """RuleClassifier (with the trained message-type model unless WORKTOOL_CLASSIFIER_MODEL=off), wrapped
    by classifiers.llm.LLMClassifier when an LLM provider is configured."""
    rules = RuleClassifier(config, model=load_type_model(settings.classifier_model))
    if not settings.llm_provider:
        return rules
    try:
        from classifiers.llm import LLMClassifier
    except ImportError as e:
        raise ClassifierUnavailable(
            f"WORKTOOL_LLM_PROVIDER={settings.llm_provider} but the LLM classifier cannot be imported: {e}"
        ) from e
    try:
        window = timedelta(minutes=config.intervention.reply_window_minutes)
        return LLMClassifier(rules, settings, reply_window=window)
    except ValueError as e:
        raise ClassifierUnavailable(f"LLM classifier misconfigured: {e}") from e


def build_reply_generator(settings: Settings, config: BusinessConfig) -> ReplyGenerator | None:
    """The LLM reply writer's generator (classifiers/llm/replies.py) when an LLM provider is configured
    and `replies.llm` is on, with the configured knowledge base (TaxKB, else PostgreSQL); else None."""
    if not settings.llm_provider or not config.replies.llm:
        return None
    from classifiers.llm.replies import LLMReplyGenerator
    from infra.knowledge import knowledge_base_from_settings

    try:
        return LLMReplyGenerator(settings, config, knowledge=knowledge_base_from_settings(settings))
    except ValueError as e:
        raise ClassifierUnavailable(f"LLM replies misconfigured: {e}") from e


def build_replay_classifier(settings: Settings, config: BusinessConfig, recordings: Recordings) -> Classifier:
    """A replay's classifier: the local classifier (as `build_classifier` builds it), with the recorded
    LLM answers of the archive on top when it holds classify answers (RecordedClassifier). Whatever
    WORKTOOL_LLM_PROVIDER says, no provider is built: a replay reproduces the live run, it asks nobody."""
    rules = RuleClassifier(config, model=load_type_model(settings.classifier_model))
    if not recordings.count("classify"):
        return rules
    from classifiers.llm.recorded import RecordedClassifier

    return RecordedClassifier(rules, recordings)


def close_classifier(classifier: Classifier) -> None:
    close = getattr(classifier, "close", None)
    if callable(close):
        close()


def call_log_events(classifier: Classifier) -> Callable[[], list[MonitorEvent | LlmRecord]] | None:
    """A drain of the classifier's LLM call logs as `ai_call` monitor events, followed by its recorded
    answers (LlmRecord, for worktool.llm: the flow routes them to its llm sinks), or None if it keeps
    none."""
    drain = getattr(classifier, "drain_call_logs", None)
    if drain is None:
        return None
    answers: Callable[[], list[LlmRecord]] = getattr(classifier, "drain_recorded_answers", list)

    def drained() -> list[MonitorEvent | LlmRecord]:
        return [*(ai_call_event(c) for c in drain()), *answers()]

    return drained


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
    "BUILTIN_MODEL",
    "ClassifierUnavailable",
    "load_type_model",
    "ai_call_event",
    "build_classifier",
    "build_reply_generator",
    "build_replay_classifier",
    "call_log_events",
    "close_classifier",
]
