"""LLM replies (operators/reply_writer.py's `ReplyGenerator`): the persona's instructions, the
conversation's recent messages, knowledge-base passages and the owner's message to the configured
provider, in the background.

`start(draft)` returns at once with a future: the knowledge-base search (in a worker thread: a remote
knowledge base answers over HTTP) and the completion run on one asyncio loop in a background thread,
at most `llm_max_in_flight` completions at a time. The reply is due after its delay, usually later than
the answer; the writer holds a reply whose answer is not back (`ready(handle)`) and sends it once it is,
or with its template once the draft's deadline (`llm_timeout_s` after `start`, plus a little) passed:
a slow provider delays that reply, never the flow.
Failures (timeout, HTTP error, no key, breaker open) come back as an answer without text and its reason;
the writer then sends the template. The circuit breaker is this generator's own: a provider that fails
replies stops being asked for a cool-down, as for classification.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from classifiers.llm.breaker import CircuitBreaker
from classifiers.llm.classifier import BackgroundLoop
from classifiers.llm.providers import LLMCallError, Provider, make_provider
from operators.knowledge import KnowledgeBase, Passage
from operators.reply_writer import GeneratedReply, ReplyDraft, build_messages
from worktool.config import BusinessConfig
from worktool.settings import Settings

log = logging.getLogger(__name__)

PASSAGES = 3  # knowledge-base passages given to the model
_GRACE_S = 0.5  # on top of the timeout, for the loop itself


@dataclass
class _Handle:
    future: concurrent.futures.Future[GeneratedReply]
    deadline: float  # monotonic


class LLMReplyGenerator:
    def __init__(
        self,
        settings: Settings,
        config: BusinessConfig,
        *,
        knowledge: KnowledgeBase | None = None,
        provider: Provider | None = None,
        clock: Callable[[], float] = time.monotonic,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
    ) -> None:
        self._config = config
        self._provider = provider or make_provider(settings)
        self.provider = self._provider.name
        self._knowledge = knowledge
        self._timeout_s = settings.llm_timeout_s
        self._clock = clock
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        self._max_in_flight = max(1, settings.llm_max_in_flight)
        self._slots: asyncio.Semaphore | None = None
        self._loop = BackgroundLoop("worktool-llm-replies")

    def start(self, draft: ReplyDraft) -> _Handle:
        deadline = self._clock() + self._timeout_s + _GRACE_S
        return _Handle(self._loop.submit(self._write(draft)), deadline)

    def ready(self, handle: _Handle) -> bool:
        return handle.future.done() or self._clock() >= handle.deadline

    def result(self, handle: _Handle) -> GeneratedReply:
        try:
            return handle.future.result(timeout=max(0.0, handle.deadline - self._clock()))
        except concurrent.futures.TimeoutError:
            handle.future.cancel()
            return GeneratedReply(None, self._provider.model, error="timeout")
        except Exception as e:  # a bug in the generator must not lose the reply: the template goes out
            log.exception("reply generation failed")
            return GeneratedReply(None, self._provider.model, error=f"error: {type(e).__name__}")

    def close(self) -> None:
        self._loop.stop(self._provider.aclose())

    async def _write(self, draft: ReplyDraft) -> GeneratedReply:
        model = self._provider.model
        persona = self._config.personas.definitions.get(draft.persona)
        if persona is None:
            return GeneratedReply(None, model, error="unknown_persona")
        passages = await self._passages(draft.question)
        if not self.breaker.allow():
            return GeneratedReply(None, model, passages, error="breaker_open")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_in_flight)
        messages = build_messages(persona, draft, passages)
        try:
            async with self._slots:
                completion = await asyncio.wait_for(
                    self._provider.complete(messages, json=False, temperature=persona.temperature),
                    self._timeout_s,
                )
        except TimeoutError:
            self.breaker.record_failure()
            return GeneratedReply(None, model, passages, error="timeout")
        except LLMCallError as e:
            if e.endpoint_failure:
                self.breaker.record_failure()
            return GeneratedReply(None, model, passages, error=f"{e.kind}: {e}"[:200])
        except Exception as e:  # no key, an SDK surprise: the template goes out
            return GeneratedReply(None, model, passages, error=f"{type(e).__name__}: {e}"[:200])
        self.breaker.record_success()
        return GeneratedReply(completion.text, model, passages)

    async def _passages(self, question: str) -> tuple[Passage, ...]:
        if self._knowledge is None:
            return ()
        try:
            found = await asyncio.wait_for(
                asyncio.to_thread(self._knowledge.search, question, PASSAGES), self._timeout_s / 2
            )
        except Exception:
            log.warning("knowledge base search failed; replying without passages", exc_info=True)
            return ()
        return tuple(found)


__all__ = ["LLMReplyGenerator"]
