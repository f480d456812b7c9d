"""HTTP to WorkTool's sendRawMessage, to the phone/SMS webhooks and to Feishu's custom bot, with retries.

Retried (up to `max_tries` in all, exponential backoff or Retry-After): HTTP 429 and errors that prove
nothing reached the other side (connection refused or timed out, the request not fully written). Not
retried, because the request may already be queued and a second one would send the message twice: a
request that got no answer in time or whose connection dropped after it was sent; it is reported as
outcome-unknown for a manual check. Any other answer is final at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from dispatcher import metrics
from dispatcher.ratelimit import RedisRateLimiter
from dispatcher.wire import (
    ERROR_NETWORK,
    ERROR_OUTCOME_UNKNOWN,
    SEND_PATH,
    Answer,
    feishu_body,
    parse_retry_after,
    read_feishu_answer,
    read_webhook_answer,
    read_worktool_answer,
    send_raw_message_body,
    webhook_body,
)
from worktool.models import CommandChannel, CommandRecord

# Nothing reached the other side: safe to try again.
_NOT_DELIVERED = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)
# Sent, but no answer: it may have been queued.
_NO_ANSWER = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)

OutcomeStatus = Literal["accepted", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_tries: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def delay(self, tries_done: int, retry_after: float | None) -> float:
        """Pause before the next try: the server's Retry-After when it sent one, else backoff × 2^(n-1)."""
        wanted = retry_after if retry_after is not None else self.backoff_s * 2 ** (tries_done - 1)
        return min(wanted, self.max_backoff_s)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final word on one request: what goes into the accepted record."""

    status: OutcomeStatus
    message_id: str = ""
    error_code: int = 0
    error_reason: str = ""
    http_status: int | None = None
    tries: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Try:
    """One try's result: an answer, or a retryable failure (with its Retry-After)."""

    answer: Answer | None = None
    http_status: int | None = None
    retry_reason: str = ""
    retry_after: float | None = None
    request_outcome: str = "accepted"


class Sender:
    def __init__(
        self,
        http: httpx.Client,
        api_base_url: str,
        policy: RetryPolicy,
        limiter: RedisRateLimiter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._send_url = api_base_url.rstrip("/") + SEND_PATH
        self._policy = policy
        self._limiter = limiter
        self._sleep = sleep

    def send_texts(self, robot_id: str, commands: Sequence[CommandRecord], token_held: bool) -> Outcome:
        """One sendRawMessage request carrying `commands` (same robot, at most 100). Every try spends a
        token of the shared limiter; `token_held` says the caller already spent the first one."""
        body = send_raw_message_body(commands)

        def post() -> httpx.Response:
            return self._http.post(self._send_url, params={"robotId": robot_id}, json=body)

        def take_token(tries_done: int) -> None:
            if tries_done or not token_held:
                metrics.RATE_LIMIT_WAIT.observe(self._limiter.acquire(self._sleep))

        return self._with_retries("wecom", post, read_worktool_answer, take_token)

    def send_webhook(self, channel: CommandChannel, url: str, command: CommandRecord) -> Outcome:
        body = webhook_body(command)

        def read(status_code: int, content: bytes) -> Answer:
            return read_webhook_answer(status_code, content, command.command_id)

        return self._with_retries(channel, lambda: self._http.post(url, json=body), read, lambda _n: None)

    def send_feishu(self, url: str, secret: str | None, command: CommandRecord) -> Outcome:
        """One text to a Feishu custom bot (signed when it has a secret; each try signs anew, so a retry
        never carries a stale timestamp). Neither the URL (its path is the bot's token) nor the secret
        appears in any log line or error reason."""

        def post() -> httpx.Response:
            return self._http.post(url, json=feishu_body(command, secret, time.time()))

        def read(status_code: int, content: bytes) -> Answer:
            return read_feishu_answer(status_code, content, command.command_id)

        return self._with_retries("feishu", post, read, lambda _n: None)

    def _with_retries(
        self,
        channel: str,
        post: Callable[[], httpx.Response],
        read: Callable[[int, bytes], Answer],
        take_token: Callable[[int], None],
    ) -> Outcome:
        started = time.monotonic()
        last: _Try = _Try()
        for tries_done in range(self._policy.max_tries):
            if tries_done:
                self._sleep(self._policy.delay(tries_done, last.retry_after))
            take_token(tries_done)
            last = self._try_once(post, read)
            metrics.REQUESTS.labels(channel, last.request_outcome).inc()
            if last.answer is not None:
                return _outcome(last.answer, last.http_status, tries_done + 1, started)
        reason = f"{last.retry_reason}, after {self._policy.max_tries} tries"
        code = last.http_status if last.http_status is not None else ERROR_NETWORK
        return Outcome(
            "failed",
            error_code=code,
            error_reason=reason,
            http_status=last.http_status,
            tries=self._policy.max_tries,
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _try_once(post: Callable[[], httpx.Response], read: Callable[[int, bytes], Answer]) -> _Try:
        try:
            response = post()
        except _NOT_DELIVERED as e:
            return _Try(
                retry_reason=f"no connection ({type(e).__name__}: {e})", request_outcome="network_error"
            )
        except _NO_ANSWER as e:
            reason = (
                f"sent but no answer ({type(e).__name__}: {e}); it may have been queued, so it is not "
                "sent again: check manually"
            )
            answer = Answer("unknown", error_code=ERROR_OUTCOME_UNKNOWN, error_reason=reason)
            return _Try(answer=answer, request_outcome="no_answer")
        except httpx.HTTPError as e:
            answer = Answer("rejected", error_code=ERROR_NETWORK, error_reason=f"{type(e).__name__}: {e}")
            return _Try(answer=answer, request_outcome="network_error")
        if response.status_code == 429:
            return _Try(
                http_status=429,
                retry_reason="rate limited by the server (HTTP 429)",
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                request_outcome="rate_limited",
            )
        answer = read(response.status_code, response.content)
        return _Try(answer=answer, http_status=response.status_code, request_outcome=answer.status)


def _outcome(answer: Answer, http_status: int | None, tries: int, started: float) -> Outcome:
    status: OutcomeStatus = {"accepted": "accepted", "rejected": "failed", "unknown": "unknown"}[
        answer.status
    ]
    return Outcome(
        status,
        message_id=answer.message_id,
        error_code=answer.error_code,
        error_reason=answer.error_reason,
        http_status=http_status,
        tries=tries,
        seconds=time.monotonic() - started,
    )
