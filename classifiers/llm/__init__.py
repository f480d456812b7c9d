"""LLM classification on top of the rules: providers, prompts, answer schema, circuit breaker."""

from __future__ import annotations

from classifiers.llm.breaker import CircuitBreaker
from classifiers.llm.classifier import LLMClassifier
from classifiers.llm.keys import KeyResolver, NoAPIKey
from classifiers.llm.providers import DashScopeProvider, LLMCallError, OpenAIProvider, Provider, make_provider

__all__ = [
    "CircuitBreaker",
    "DashScopeProvider",
    "KeyResolver",
    "LLMCallError",
    "LLMClassifier",
    "NoAPIKey",
    "OpenAIProvider",
    "Provider",
    "make_provider",
]
