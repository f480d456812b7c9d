"""LLM providers: one chat request in, the model's text and token usage out.

Every failure is raised as LLMCallError with a `kind` the retry policy and the AI I/O log understand; the
SDKs' own retries are off (we retry with tenacity, under our own deadline).

- OpenAIProvider: any OpenAI-compatible endpoint (OpenAI, Doubao/Ark, DeepSeek, Qwen compatible mode,
  vLLM/Ollama...) through the `openai` package.
- DashScopeProvider: Alibaba DashScope's native protocol through the `dashscope` package
  (`AioGeneration`, `result_format="message"`); `llm_base_url` is passed per call as `base_address`
  (e.g. https://dashscope.aliyuncs.com/api/v1), so no process-wide SDK state is touched.

Both ask for JSON mode (`response_format={"type": "json_object"}`). A server that rejects it with 400/422
is asked once more without it and, if that works, never asked for it again.

The API key is taken per request from a KeyResolver (classifiers/llm/keys.py: the environment's key, else
the one stored through the console, re-read periodically). When the endpoint refuses it (401/403), the
resolver re-reads the stored key at once and, if it has changed meanwhile, the request is sent once more
with the new key (one attempt as far as the classifier's retries and breaker are concerned).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import openai
from dashscope import AioGeneration
from dashscope.api_entities.aio_session import close_shared_aio_session

from classifiers.llm.keys import NO_KEY, KeyResolver
from infra.llm_keys import fingerprint
from worktool.settings import Settings

log = logging.getLogger(__name__)

ChatMessages = list[dict[str, str]]
ErrorKind = Literal["timeout", "connection", "rate_limited", "server", "client", "protocol"]
_RETRYABLE: frozenset[str] = frozenset({"timeout", "connection", "rate_limited", "server"})

_JSON_MODE = {"type": "json_object"}


@dataclass(frozen=True)
class Completion:
    text: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None


class LLMCallError(Exception):
    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status_code = status_code
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE

    @property
    def endpoint_failure(self) -> bool:
        """Does this say the endpoint is unusable (circuit-breaker material)? A 400/422 is about this one
        request (e.g. DashScope's content inspection rejecting a message), not the endpoint."""
        return self.kind != "client" or self.status_code in (401, 403, 404)


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form only; HTTP dates are rare from LLM APIs)."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def status_error(status: int, detail: str, headers: Mapping[str, Any] | None = None) -> LLMCallError:
    if status == 429:
        kind: ErrorKind = "rate_limited"
    elif status >= 500:
        kind = "server"
    else:
        kind = "client"
    return LLMCallError(
        kind, f"HTTP {status}: {detail}"[:500], status_code=status, retry_after=_retry_after(headers)
    )


class Provider(ABC):
    name: str

    def __init__(self, settings: Settings, keys: KeyResolver | None = None) -> None:
        if not settings.llm_model:
            raise ValueError("WORKTOOL_LLM_MODEL must be set when an LLM provider is configured")
        self.model: str = settings.llm_model
        self._timeout_s = settings.llm_timeout_s
        self._json_mode = True
        self.keys = keys or KeyResolver(settings)

    async def complete(
        self, messages: ChatMessages, *, json: bool = True, temperature: float = 0
    ) -> Completion:
        """One completion (a JSON object unless `json=False`: a reply's text); NoAPIKey
        (classifiers/llm/keys.py) when there is no key to send."""
        api_key = await self.keys.get()
        try:
            return await self._complete(messages, api_key, json, temperature)
        except LLMCallError as e:
            if e.status_code not in (401, 403) or not await self.keys.auth_failed(api_key):
                raise
        new_key = await self.keys.get()
        log.info(
            "%s endpoint refused the key %s; trying once more with %s",
            self.name,
            fingerprint(api_key),
            fingerprint(new_key),
        )
        return await self._complete(messages, new_key, json, temperature)

    async def _complete(
        self, messages: ChatMessages, api_key: str, json: bool, temperature: float
    ) -> Completion:
        if not (json and self._json_mode):
            return await self._request(messages, api_key=api_key, json_mode=False, temperature=temperature)
        try:
            return await self._request(messages, api_key=api_key, json_mode=True, temperature=temperature)
        except LLMCallError as e:
            if e.status_code not in (400, 422):
                raise
            completion = await self._request(
                messages, api_key=api_key, json_mode=False, temperature=temperature
            )
            # Only now do we know response_format was the problem.
            self._json_mode = False
            log.info("%s endpoint rejects response_format; continuing without JSON mode", self.name)
            return completion

    @abstractmethod
    async def _request(
        self, messages: ChatMessages, *, api_key: str, json_mode: bool, temperature: float = 0
    ) -> Completion: ...

    async def aclose(self) -> None:
        keys = getattr(self, "keys", None)  # a test double may not have called __init__
        if keys is not None:
            await keys.aclose()


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, settings: Settings, keys: KeyResolver | None = None) -> None:
        super().__init__(settings, keys)
        # The key given here is a stand-in: each request uses a copy of this client with the current key
        # (`with_options` shares the connection pool), made again only when the key changes.
        self._client = openai.AsyncOpenAI(
            base_url=settings.llm_base_url,
            api_key=NO_KEY,
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )
        self._keyed: tuple[str, openai.AsyncOpenAI] | None = None

    def _client_for(self, api_key: str) -> openai.AsyncOpenAI:
        if self._keyed is None or self._keyed[0] != api_key:
            self._keyed = (api_key, self._client.with_options(api_key=api_key))
        return self._keyed[1]

    async def _request(
        self, messages: ChatMessages, *, api_key: str, json_mode: bool, temperature: float = 0
    ) -> Completion:
        extra: dict[str, Any] = {"response_format": _JSON_MODE} if json_mode else {}
        try:
            resp = await self._client_for(api_key).chat.completions.create(
                model=self.model, messages=messages, temperature=temperature, **extra
            )
        except openai.APITimeoutError as e:
            raise LLMCallError("timeout", f"no answer within {self._timeout_s} s") from e
        except openai.APIConnectionError as e:
            raise LLMCallError("connection", f"connection error: {e.__cause__ or e}") from e
        except openai.APIStatusError as e:
            raise status_error(e.status_code, e.message, e.response.headers) from e
        except openai.OpenAIError as e:
            raise LLMCallError("protocol", f"{type(e).__name__}: {e}") from e
        text = resp.choices[0].message.content if resp.choices else None
        usage = resp.usage
        if usage is None:
            return Completion(text)
        return Completion(text, usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)

    async def aclose(self) -> None:
        await super().aclose()
        await self._client.close()  # the keyed copies share its connection pool


class DashScopeProvider(Provider):
    name = "dashscope"

    def __init__(self, settings: Settings, keys: KeyResolver | None = None) -> None:
        super().__init__(settings, keys)
        self._base_url = settings.llm_base_url

    async def _request(
        self, messages: ChatMessages, *, api_key: str, json_mode: bool, temperature: float = 0
    ) -> Completion:
        kwargs: dict[str, Any] = {"request_timeout": self._timeout_s, "temperature": temperature}
        if self._base_url:
            kwargs["base_address"] = self._base_url
        if json_mode:
            kwargs["response_format"] = _JSON_MODE
        try:
            resp = await AioGeneration.call(
                model=self.model, messages=messages, api_key=api_key, result_format="message", **kwargs
            )
        except TimeoutError as e:  # aiohttp's timeouts are TimeoutError subclasses
            raise LLMCallError("timeout", f"no answer within {self._timeout_s} s") from e
        except aiohttp.ClientError as e:
            raise LLMCallError("connection", f"connection error: {e}") from e
        except Exception as e:  # the SDK raises its own types for odd answers
            raise LLMCallError("protocol", f"{type(e).__name__}: {e}") from e
        if resp.status_code != 200:
            raise status_error(resp.status_code, f"{resp.code}: {resp.message}", resp.headers)
        return self._completion(resp)

    @staticmethod
    def _completion(resp: Any) -> Completion:
        try:
            output = resp.output or {}
            choices = output.get("choices") or []
            text = choices[0]["message"]["content"] if choices else output.get("text")
            usage = resp.usage or {}
        except (KeyError, IndexError, TypeError, AttributeError) as e:
            raise LLMCallError("protocol", f"unexpected DashScope answer shape: {e!r}") from e
        inp, out = usage.get("input_tokens"), usage.get("output_tokens")
        total = usage.get("total_tokens")
        if total is None and inp is not None and out is not None:
            total = inp + out
        return Completion(text if isinstance(text, str) else None, inp, out, total)

    async def aclose(self) -> None:
        await super().aclose()
        # The SDK keeps one aiohttp session per event loop; ours is about to stop.
        await close_shared_aio_session()


PROVIDERS: dict[str, type[Provider]] = {"openai": OpenAIProvider, "dashscope": DashScopeProvider}


def make_provider(settings: Settings, keys: KeyResolver | None = None) -> Provider:
    name = (settings.llm_provider or "").strip().lower()
    if name not in PROVIDERS:
        raise ValueError(
            f"WORKTOOL_LLM_PROVIDER must be one of {sorted(PROVIDERS)}, got {settings.llm_provider!r}"
        )
    return PROVIDERS[name](settings, keys)
