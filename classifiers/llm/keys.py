"""Which API key the LLM providers send: the environment's, else the one stored through the console.

Precedence (docs/operations.md, "LLM provider keys"):
1. WORKTOOL_LLM_API_KEY: used as it is, never re-read (a change needs a restart);
2. else, with a database (DATABASE_URL, the dataflow's login, which may SELECT llm_provider_keys since
   migration 0013): the key of WORKTOOL_LLM_PROVIDER stored through the console, decrypted with
   WORKTOOL_SECRETS_KEY (infra/llm_keys.py);
3. else (no database: a replay, `worktool classify`, a benchmark): no key; the SDKs get a placeholder,
   which is what a local endpoint without keys (vLLM, Ollama) wants.

The stored key is read on first use, then again when a call finds it older than
WORKTOOL_LLM_KEY_REFRESH_S (one read at a time, on the classifier's event loop), and at once when the
provider refuses the key (401/403; at most once a second), so a key set, replaced or deleted through the
console applies to the next calls without a restart. A call waits for a due read at most
`_STALE_WAIT_S` when it has a key (then goes on with it), at most the read's own timeout when it has none.
With no key (none stored, deleted, undecryptable, no WORKTOOL_SECRETS_KEY) a call raises NoAPIKey, whose
message says why: the classifier keeps the rule result and records that reason. When the database cannot
be read the last key is kept and the read is tried again after the refresh interval.

Keys are never logged: each state change is logged once, with fingerprints (infra.llm_keys.fingerprint).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import psycopg

from infra.llm_keys import SecretsKeyError, UndecryptableKey, fingerprint, open_key, parse_secrets_key
from worktool.settings import Settings

log = logging.getLogger(__name__)

# Local OpenAI-compatible servers need no key, but both SDKs refuse to start without one.
NO_KEY = "not-needed"
KeySource = Literal["environment", "console", "none"]

DB_TIMEOUT_S = 3.0  # connect + query of one read
_STALE_WAIT_S = 0.5  # how long a call with a key waits for a due read before going on with its key
_MIN_FORCED_GAP_S = 1.0  # reads forced by 401/403, at most this often
_REMEMBERED_KEYS = 8  # for redaction: the current key and a few before it


class NoAPIKey(Exception):
    """No key to call the provider with; the message says why (and never holds a key)."""


class KeyResolver:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_s: float | None = None,
        db_timeout_s: float = DB_TIMEOUT_S,
    ) -> None:
        self.provider = (settings.llm_provider or "").strip().lower()
        self.refresh_s = refresh_s if refresh_s is not None else settings.llm_key_refresh_s
        self._clock = clock
        self._db_timeout_s = db_timeout_s
        self._url = settings.database_url
        self._secrets_key: bytes | None = None
        self._fixed: str | None = None  # the key when it is not read from the database
        self._key: str | None = None
        self._reason = ""  # why there is no key
        self._reason_logged = ""
        self._seen: deque[str] = deque(maxlen=_REMEMBERED_KEYS)
        self._read_once = False
        self._next_read = 0.0
        self._last_forced_read = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._db_error: str | None = None

        env_key = (settings.llm_api_key or "").strip()
        self.source: KeySource
        if env_key:
            self.source, self._fixed = "environment", env_key
            self._seen.append(env_key)
        elif not self._url:
            self.source, self._fixed = "none", NO_KEY
        else:
            self.source = "console"
            try:
                self._secrets_key = parse_secrets_key(settings.secrets_key)
            except SecretsKeyError as e:
                problem = str(e) if settings.secrets_key else "WORKTOOL_SECRETS_KEY is not set"
                self._reason = (
                    f"WORKTOOL_LLM_API_KEY is not set and the {self.provider} key stored through the "
                    f"console cannot be opened ({problem.split(':')[0]})"
                )
            else:
                self._reason = f"the {self.provider} key stored through the console is not read yet"

    # -- for the providers -----------------------------------------------------------------------

    async def get(self) -> str:
        """The key to send now; NoAPIKey when there is none (its message says why)."""
        if self._fixed is not None:
            return self._fixed
        if self._secrets_key is None:
            self._log_reason()
            raise NoAPIKey(self._reason)
        if not self._read_once or self._clock() >= self._next_read:
            task = self._start_read(forced=False)
            if task is not None:
                await _wait(task, _STALE_WAIT_S if self._key is not None else self._db_timeout_s + 0.5)
        if self._key is None:
            raise NoAPIKey(self._reason)
        return self._key

    async def auth_failed(self, refused: str) -> bool:
        """The provider refused `refused` (401/403): read the stored key at once. True when another key is
        current now (worth one more try), False otherwise (the environment's key, the same key, none)."""
        if self._fixed is not None or self._secrets_key is None:
            return False
        if self._key is not None and self._key != refused:
            return True  # a concurrent call's read already found the new key
        task = self._start_read(forced=True)
        if task is not None:
            await _wait(task, self._db_timeout_s + 0.5)
        return self._key is not None and self._key != refused

    # -- for logs and redaction ------------------------------------------------------------------

    @property
    def fingerprint(self) -> str | None:
        """The current key's fingerprint (None without a key, and for the no-key placeholder)."""
        key = self._fixed if self.source == "environment" else self._key
        return None if key is None else fingerprint(key)

    @property
    def reason(self) -> str:
        """Why there is no key ("" when there is one)."""
        return "" if self._fixed is not None or self._key is not None else self._reason

    def known_keys(self) -> tuple[str, ...]:
        """The keys this process has used lately, to redact from anything it records."""
        return tuple(self._seen)

    async def aclose(self) -> None:
        """Stop a read in progress (the event loop is about to stop)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- reading ---------------------------------------------------------------------------------

    def _start_read(self, *, forced: bool) -> asyncio.Task[None] | None:
        if self._task is not None and not self._task.done():
            return self._task
        now = self._clock()
        if forced:
            if now - self._last_forced_read < _MIN_FORCED_GAP_S:
                return None
            self._last_forced_read = now
        elif self._read_once and now < self._next_read:
            return None
        self._next_read = now + self.refresh_s
        self._task = asyncio.get_running_loop().create_task(self._read(), name="worktool-llm-key-read")
        return self._task

    async def _read(self) -> None:
        assert self._url is not None and self._secrets_key is not None
        try:
            async with asyncio.timeout(self._db_timeout_s):
                conn = await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, connect_timeout=max(1, math.ceil(self._db_timeout_s))
                )
                async with conn:
                    key = await open_key(conn, self._secrets_key, self.provider)
        except UndecryptableKey as e:
            self._database_answered()
            self._set(None, f"{e}: is WORKTOOL_SECRETS_KEY the console's?")
        except (psycopg.Error, OSError, TimeoutError) as e:
            self._database_failed(e)
        except Exception as e:  # a bug must not end the reads: keep the last key, try again later
            log.exception("reading the stored %s key failed", self.provider)
            self._database_failed(e)
        else:
            self._database_answered()
            self._set(key, None)
        finally:
            self._read_once = True

    def _set(self, key: str | None, reason: str | None) -> None:
        before = self._key
        self._key = key
        if key is not None:
            if key not in self._seen:
                self._seen.append(key)
            if before is None:
                log.info("LLM key of %s: %s, stored through the console", self.provider, fingerprint(key))
            elif before != key:
                log.info(
                    "LLM key of %s changed through the console: %s -> %s",
                    self.provider,
                    fingerprint(before),
                    fingerprint(key),
                )
            self._reason = self._reason_logged = ""
            return
        if reason is not None:
            self._reason = reason
        elif before is not None:
            self._reason = (
                f"the {self.provider} key stored through the console ({fingerprint(before)}) was deleted "
                "and WORKTOOL_LLM_API_KEY is not set: no LLM calls until a key is set"
            )
        elif "was deleted" not in self._reason:
            self._reason = (
                f"WORKTOOL_LLM_API_KEY is not set and no {self.provider} key is stored through the "
                f"console (PUT /api/llm/keys/{self.provider})"
            )
        self._log_reason()

    def _database_failed(self, error: BaseException) -> None:
        what = (f"{type(error).__name__}: {error}".strip().splitlines() or [type(error).__name__])[0][:200]
        if self._db_error is None:
            if self._key is not None:
                log.warning(
                    "cannot read the stored %s key (%s): keeping %s, trying again every %g s",
                    self.provider,
                    what,
                    fingerprint(self._key),
                    self.refresh_s,
                )
            else:
                log.warning(
                    "cannot read the stored %s key (%s): trying again every %g s",
                    self.provider,
                    what,
                    self.refresh_s,
                )
        self._db_error = what
        if self._key is None:
            self._reason = f"the {self.provider} key stored through the console cannot be read ({what})"

    def _database_answered(self) -> None:
        if self._db_error is not None:
            log.info("the stored %s key can be read again", self.provider)
            self._db_error = None

    def _log_reason(self) -> None:
        if self._reason and self._reason != self._reason_logged:
            log.warning("LLM calls to %s stop: %s", self.provider, self._reason)
            self._reason_logged = self._reason


async def _wait(task: asyncio.Task[None], timeout_s: float) -> None:
    """Wait for a read without cancelling it when this caller stops waiting."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout_s)
