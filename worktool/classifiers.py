"""Which classifier runs: the rules, or the LLM on top of them when WORKTOOL_LLM_PROVIDER is set.

Lives in worktool/ (not operators/) because choosing the LLM means network I/O.
"""

from __future__ import annotations

import logging

from operators.classify import Classifier, RuleClassifier
from worktool.config import BusinessConfig
from worktool.settings import Settings

log = logging.getLogger(__name__)


def build_classifier(settings: Settings, config: BusinessConfig) -> Classifier:
    """RuleClassifier, wrapped by worktool.llm.LLMClassifier when an LLM provider is configured.
    Rules are always available: a missing or broken LLM module only costs a warning."""
    rules = RuleClassifier(config)
    if not settings.llm_provider:
        return rules
    try:
        from worktool.llm import LLMClassifier
    except ImportError as e:
        log.warning("WORKTOOL_LLM_PROVIDER=%s but the LLM classifier cannot be imported (%s); using rules only",
                    settings.llm_provider, e)
        return rules
    try:
        return LLMClassifier(rules, settings)
    except Exception as e:  # a misconfigured provider must not take classification down
        log.warning("LLM classifier not available (%s); using rules only", e)
        return rules


def close_classifier(classifier: Classifier) -> None:
    close = getattr(classifier, "close", None)
    if callable(close):
        close()
