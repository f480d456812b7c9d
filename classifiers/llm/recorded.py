"""RecordedClassifier: a replay's classifier. The local classifier first (the rules and the trained model,
as live), then, for a message whose live classification used an LLM answer, that recorded answer
(worktool.models.LlmRecord, status "ok", from the archive's `llm_answer` lines) applied by the same
`apply_answer` as live: the same parse for the sender's category and the same merge with the local result,
so decided_by, type, confidence, need_reply, sentiment and reply_quality are the live run's. A recorded
fallback, or no record at all, leaves the local result, as it stood live. No provider is ever asked, so a
replay emits no `ai_call` events (they describe provider calls; docs/architecture.md "Recorded LLM
answers").

Whether the live call asked for a reply-quality score is recorded with the answer (`detail.scores_reply`):
live decides it from the owners' open questions the classifier followed, which depend on its batches and
on restarts, so the replay takes the recorded fact instead of following them again.
"""

from __future__ import annotations

import logging

from classifiers.llm.classifier import OPERATION, apply_answer
from classifiers.llm.schema import InvalidAnswer
from operators.classify import Classifier
from operators.recordings import Recordings
from worktool.models import Classification, Message

log = logging.getLogger(__name__)


class RecordedClassifier:
    """The local classifier with the recorded LLM answers of `recordings` applied on top."""

    def __init__(self, rules: Classifier, recordings: Recordings) -> None:
        self._rules = rules
        self._recordings = recordings
        self.used = 0  # recorded "ok" answers applied
        self.fallbacks = 0  # recorded fallbacks met (the local result stood, as live)
        self.unusable = 0  # recorded "ok" answers that no longer parse for the sender (logged)

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        results = list(self._rules.classify_batch(messages))
        get = self._recordings.get
        for i, m in enumerate(messages):
            record = get(OPERATION, m.message_id)
            if record is None:
                continue
            if record.status != "ok":
                self.fallbacks += 1
                continue
            try:
                results[i] = apply_answer(record.output, results[i], bool(record.detail.get("scores_reply")))
            except InvalidAnswer as e:
                # Live parsed this very text for this sender: only a changed roster or configuration
                # (another sender type now) gets here. The local result stands.
                self.unusable += 1
                log.warning("recorded LLM answer for %s not applied: %s", m.message_id, e)
                continue
            self.used += 1
        return results


__all__ = ["RecordedClassifier"]
