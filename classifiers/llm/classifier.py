"""LLMClassifier: the local classifier first (the rules and the trained model), then an LLM on top, never
worse than the local result.

bytewax calls `classify_batch` synchronously per batch. The LLM calls of a batch run concurrently on one
asyncio loop living in a background thread (started on first use, shared by every caller), bounded by
`llm_max_in_flight` requests in flight. The caller waits at most the batch deadline (about
`llm_timeout_s` plus a little); whatever is not back by then keeps its rule result.

Failure policy (every failure leaves the local result, decided_by "rules" or "model"; nothing is raised):
- timeouts, connection errors, HTTP 429 and 5xx: retried with exponential back-off (Retry-After honoured,
  capped), up to `max_attempts` requests per message, within the batch deadline;
- other 4xx: not retried (a bad key or model name will not fix itself);
- malformed JSON or a schema/category violation ("invalid"): not retried. At temperature 0 the same
  prompt tends to give the same bad answer, and the rule result is a fine fallback, so a second paid call
  would mostly add latency;
- the circuit breaker counts consecutive failed requests: timeouts, connection errors, 429, 5xx, 401/403/404
  and unreadable responses. Invalid answers and other 4xx (a request the endpoint refused, such as a
  content-inspection 400) do not count: the endpoint answered. While open no request is sent
  ("breaker_open").
- no API key (none in WORKTOOL_LLM_API_KEY nor stored through the console, or deleted there; see
  classifiers/llm/keys.py): no request is sent, the record's error says why, the breaker is untouched.

Every non-robot message asked about yields exactly one AI I/O record (`drain_call_logs`) and one recorded
answer (`drain_recorded_answers`, a worktool.models.LlmRecord for the topic worktool.llm): status "ok"
with the completion's content when the answer was used, "fallback" with the reason when the local result
stood. A replay applies the recorded answers with the same `apply_answer` (classifiers/llm/recorded.py,
docs/architecture.md "Recorded LLM answers"), so its classifications are the live run's.

Staff reply quality (docs/rules.md §3, situation 2): the classifier follows the owners' open questions
per session as the sessions step does (operators/quality.py, in message order, bounded to
`_MAX_ASK_SESSIONS` sessions, not snapshotted: after a restart the first answers go without their
question and are scored by the rules). An owner's question here is one the local result marks
`need_reply` (the LLM's own answer is not back yet when the batch's staff messages are prepared); where
the sessions step, which reads the final classification, disagrees, the rules score the reply. A staff or assistant message answering one is asked with the
question and also scored by the model (`reply_quality` on the Classification); any failure leaves it to
the rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from classifiers.llm.breaker import CircuitBreaker
from classifiers.llm.keys import NoAPIKey
from classifiers.llm.loop import BackgroundLoop
from classifiers.llm.prompt import build_messages
from classifiers.llm.providers import Completion, LLMCallError, Provider, make_provider
from classifiers.llm.schema import InvalidAnswer, LLMVerdict, parse_verdict, types_for
from operators.classify import Classifier
from operators.quality import Ask, note_ask, take_ask
from worktool.models import Classification, LlmRecord, Message, iso
from worktool.settings import Settings

log = logging.getLogger(__name__)

CallStatus = Literal["ok", "error", "timeout", "breaker_open", "invalid"]

OPERATION = "classify"
# Extra wait on top of the batch deadline before the caller gives up on the loop itself (the loop
# enforces the deadline; this only guards against a wedged loop).
_LOOP_GRACE_S = 1.0
# Undrained records are dropped oldest-first beyond this, so a caller that never drains cannot leak.
_MAX_PENDING_LOGS = 10_000
# Sessions whose owners' open questions are followed (the least recently active dropped beyond).
_MAX_ASK_SESSIONS = 4096


class BreakerOpen(Exception):
    pass


@dataclass
class _Call:
    """What one message's classification call did, for its AI I/O record."""

    message: Message
    prompt: list[dict[str, str]]
    scores_reply: bool = False  # asked for the reply_quality of an answer to an owner's question
    started: float | None = None  # perf_counter at the first request
    completion: Completion | None = None
    status: CallStatus = "error"
    error: str | None = None
    last_failure: str | None = None  # of the latest attempt, kept when the deadline cuts the retries
    answer: Classification | None = None  # the LLM's classification, when it is used


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, LLMCallError) and exc.retryable


class LLMClassifier:
    """Classifier that asks an LLM on top of `rules` (see the module docstring for the policy)."""

    # Its batches are bounded by the batch deadline: the dataflow's step budget does not time them
    # message by message (dataflows/watchdog.py).
    bounds_its_batches = True

    def __init__(
        self,
        rules: Classifier,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        provider: Provider | None = None,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        max_attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 2.0,
        batch_deadline_s: float | None = None,
        reply_window: timedelta = timedelta(minutes=30),
    ) -> None:
        self._rules = rules
        self._reply_window = reply_window
        self._asks: dict[str, dict[str, Ask]] = {}  # session -> owner -> open question
        self._provider = provider or make_provider(settings)
        self._secret = settings.llm_api_key  # the keys the provider's resolver has used are redacted too
        self.breaker = CircuitBreaker(failure_threshold, cooldown_s, clock)
        self._max_in_flight = max(1, settings.llm_max_in_flight)
        self._max_attempts = max(1, max_attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._deadline_s = batch_deadline_s if batch_deadline_s is not None else settings.llm_timeout_s + 1.0
        self._loop = BackgroundLoop("worktool-llm")
        self._slots: asyncio.Semaphore | None = None  # created on the loop
        self._logs: deque[dict[str, Any]] = deque(maxlen=_MAX_PENDING_LOGS)
        self._answers: deque[LlmRecord] = deque(maxlen=_MAX_PENDING_LOGS)
        self._logs_lock = threading.Lock()
        self._closed = False

    # -- Classifier protocol ---------------------------------------------------------------------

    def classify_batch(self, messages: list[Message]) -> list[Classification]:
        results = list(self._rules.classify_batch(messages))
        questions = self._questions(messages, results)
        todo = [i for i, (m, r) in enumerate(zip(messages, results, strict=True)) if _worth_asking(m, r)]
        if not todo or self._closed:
            return results
        future = self._loop.submit(
            self._classify_all([(messages[i], results[i], questions.get(i)) for i in todo])
        )
        try:
            calls: list[_Call] = future.result(timeout=self._deadline_s + _LOOP_GRACE_S)
        except Exception:
            # The loop enforces the deadline itself, so this is a wedged loop or a bug: keep the rules.
            future.cancel()
            log.exception("LLM batch did not finish; keeping the rule results")
            self._keep_answers(
                self._fallback(
                    messages[i], "timeout", "the batch did not finish", questions.get(i) is not None
                )
                for i in todo
            )
            return results
        # Recorded here, from what the batch actually used (not on the loop, where a call may still finish
        # after the caller stopped waiting).
        for i, call in zip(todo, calls, strict=True):
            if call.answer is not None:
                results[i] = call.answer
        self._keep_answers(self._answer_record(call) for call in calls)
        return results

    def _questions(self, messages: list[Message], results: list[Classification]) -> dict[int, str]:
        """The owner's question each staff or assistant message of the batch answers, by position; the
        owners' questions of the batch noted on the way (operators/quality.py, as the sessions step)."""
        found: dict[int, str] = {}
        sessions, window = self._asks, self._reply_window
        for i, (m, r) in enumerate(zip(messages, results, strict=True)):
            if r.sender_type == "user":
                text = m.text or m.raw_text
                if r.need_reply and text.strip():
                    asks = sessions.pop(m.session_id, None) or {}
                    sessions[m.session_id] = asks  # the most recently active last
                    note_ask(asks, m.sender_name, text, m.received_at, window)
                    if len(sessions) > _MAX_ASK_SESSIONS:
                        del sessions[next(iter(sessions))]
            elif r.sender_type in ("staff", "assistant") and (asks := sessions.get(m.session_id)):
                answered = take_ask(asks, m.mentions, m.received_at, window)
                if answered is not None:
                    found[i] = answered[1][1]
        return found

    def drain_call_logs(self) -> list[dict[str, Any]]:
        """AI I/O records since the last drain: the data of `ai_call` monitor events (docs/events.md),
        plus `call_id`, `session_id`, `robot_id` and `event_time` (the message's received_at) for the
        event envelope."""
        with self._logs_lock:
            records = list(self._logs)
            self._logs.clear()
        return records

    def drain_recorded_answers(self) -> list[LlmRecord]:
        """The answers since the last drain, one per message asked about (worktool.llm): what a replay
        applies instead of asking a provider (classifiers/llm/recorded.py)."""
        with self._logs_lock:
            records = list(self._answers)
            self._answers.clear()
        return records

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.stop(self._provider.aclose())

    def __enter__(self) -> LLMClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- on the loop -----------------------------------------------------------------------------

    async def _classify_all(self, items: list[tuple[Message, Classification, str | None]]) -> list[_Call]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_in_flight)
        deadline = asyncio.get_running_loop().time() + self._deadline_s
        return await asyncio.gather(*(self._classify_one(m, r, q, deadline) for m, r, q in items))

    async def _classify_one(
        self, message: Message, rule: Classification, question: str | None, deadline: float
    ) -> _Call:
        """Never raises (except cancellation); the call's `answer` None means "keep the rule result"."""
        call = _Call(message, build_messages(message, rule, question), scores_reply=question is not None)
        try:
            async with asyncio.timeout_at(deadline):
                call.completion = await self._complete(call)
            answer = apply_answer(call.completion.text, rule, call.scores_reply)
        except TimeoutError:
            call.status, call.error = "timeout", f"batch deadline ({self._deadline_s:g} s) reached"
            if call.last_failure:
                call.error += f"; last failure: {call.last_failure}"
        except BreakerOpen:
            call.status, call.error = "breaker_open", "circuit breaker open"
        except NoAPIKey as e:
            call.status, call.error = "error", f"no API key: {e}"
        except LLMCallError as e:
            call.status, call.error = ("timeout" if e.kind == "timeout" else "error"), str(e)
        except InvalidAnswer as e:
            call.status, call.error = "invalid", str(e)
        except asyncio.CancelledError:
            call.status, call.error = "timeout", "cancelled: the caller stopped waiting"
            raise
        except Exception as e:  # a bug must not cost the batch its rule results
            log.exception("unexpected error in LLM classification")
            call.status, call.error = "error", f"{type(e).__name__}: {e}"
        else:
            call.status, call.answer = "ok", answer
        finally:
            self._record(call)
        return call

    async def _complete(self, call: _Call) -> Completion:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        return await retrying(self._attempt, call)

    async def _attempt(self, call: _Call) -> Completion:
        assert self._slots is not None
        async with self._slots:
            if not self.breaker.allow():
                raise BreakerOpen
            if call.started is None:
                call.started = time.perf_counter()
            try:
                completion = await self._provider.complete(call.prompt)
            except LLMCallError as e:
                call.last_failure = str(e)
                if e.endpoint_failure:
                    self.breaker.record_failure()
                else:
                    self.breaker.record_success()  # the endpoint answered; the request was the problem
                raise
            except BaseException:  # cut off by the deadline, no key (NoAPIKey) or a bug: no verdict
                self.breaker.release()
                raise
            self.breaker.record_success()
            return completion

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, LLMCallError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_backoff_s)
        delay = self._backoff_s * 2 ** (state.attempt_number - 1)
        # A little jitter so a batch of failed calls does not retry in lock-step.
        return min(delay * (1 + 0.2 * random.random()), self._max_backoff_s)

    # -- AI I/O log ------------------------------------------------------------------------------

    def _record(self, call: _Call) -> None:
        m, c = call.message, call.completion
        latency_ms = 0 if call.started is None else round((time.perf_counter() - call.started) * 1000)
        output = c.text if c is not None else call.error
        record = {
            "call_id": f"{m.message_id}:{OPERATION}",
            "session_id": m.session_id,
            "robot_id": m.robot_id,
            "event_time": iso(m.received_at),
            "message_id": m.message_id,
            "operation_type": OPERATION,
            "provider": self._provider.name,
            "model_id": self._provider.model,
            "input": json.dumps(call.prompt, ensure_ascii=False),
            "output": self._redact(output),
            "status": call.status,
            "error_message": self._redact(call.error),
            "latency_ms": latency_ms,
            "input_tokens": c.input_tokens if c else None,
            "output_tokens": c.output_tokens if c else None,
            "total_tokens": c.total_tokens if c else None,
        }
        with self._logs_lock:
            self._logs.append(record)

    def _answer_record(self, call: _Call) -> LlmRecord:
        if call.answer is None or call.completion is None:
            return self._fallback(call.message, call.status, call.error, call.scores_reply)
        # verbatim: the replay parses exactly what live parsed
        return self._llm_record(call.message, "ok", call.completion.text, {"scores_reply": call.scores_reply})

    def _fallback(self, m: Message, reason: str, error: str | None, scores_reply: bool) -> LlmRecord:
        detail = {"reason": reason, "error": self._redact(error), "scores_reply": scores_reply}
        return self._llm_record(m, "fallback", None, detail)

    def _llm_record(
        self, m: Message, status: Literal["ok", "fallback"], output: str | None, detail: dict
    ) -> LlmRecord:
        return LlmRecord(
            operation=OPERATION, key=m.message_id, at=m.received_at, status=status,
            provider=self._provider.name, model=self._provider.model, output=output, detail=detail,
        )  # fmt: skip

    def _keep_answers(self, records: Iterable[LlmRecord]) -> None:
        with self._logs_lock:
            self._answers.extend(records)

    def _redact(self, text: str | None) -> str | None:
        # Some servers echo the key in auth errors; the AI I/O log must never carry it.
        if not text:
            return text
        keys = getattr(self._provider, "keys", None)
        for secret in (self._secret, *(keys.known_keys() if keys is not None else ())):
            if secret and secret in text:
                text = text.replace(secret, "***")
        return text


def _worth_asking(message: Message, rule: Classification) -> bool:
    # Robots are never classified; an empty text (image, file...) gives the model nothing to read.
    return bool(types_for(rule.sender_type)) and bool(message.text.strip())


def apply_answer(text: str | None, rule: Classification, scores_reply: bool) -> Classification:
    """The classification an LLM answer gives on top of the local result `rule`: the answer parsed for
    the sender's category (raises InvalidAnswer) and merged. Live (LLMClassifier) and a replay of the
    recorded answer (classifiers/llm/recorded.py) both go through here, so they decide the same."""
    return _classification(parse_verdict(text, rule.sender_type), rule, scores_reply)


def _classification(verdict: LLMVerdict, rule: Classification, scores_reply: bool = False) -> Classification:
    # Who spoke comes from the roster and inline commands from the rules; the LLM decides the rest (and
    # scores a reply when it was asked to: an unasked score is not taken).
    return Classification(
        sender_type=rule.sender_type,
        message_type=verdict.message_type,
        confidence=verdict.confidence,
        reason=(verdict.reason.strip() or "llm")[:200],
        decided_by="llm",
        sentiment=verdict.sentiment,
        need_reply=verdict.need_reply,
        staff_command=rule.staff_command,
        reply_quality=verdict.reply_quality if scores_reply else None,
    )
