"""LLM classification on top of the rules (RULES.md §2): providers, prompts, answer schema, breaker."""

from __future__ import annotations

from worktool.llm.breaker import CircuitBreaker
from worktool.llm.classifier import LLMClassifier, RuleClassifier
from worktool.llm.providers import DashScopeProvider, LLMCallError, OpenAIProvider, Provider, make_provider
from worktool.settings import Settings


def classifier_for(rules: RuleClassifier, settings: Settings) -> RuleClassifier:
    """The LLM classifier when WORKTOOL_LLM_PROVIDER is set, else the rules alone."""
    return LLMClassifier(rules, settings) if settings.llm_provider else rules


__all__ = [
    "CircuitBreaker",
    "DashScopeProvider",
    "LLMCallError",
    "LLMClassifier",
    "OpenAIProvider",
    "Provider",
    "RuleClassifier",
    "classifier_for",
    "make_provider",
]
