"""Who may post webhooks and read /metrics.

Webhook tokens: WorkTool calls back exactly the URL registered for a robot, so the URL can carry a
per-robot secret: `…/callback/message?robotId=ID&token=T`. Tokens come from secrets, never from the
business YAML that lives in git: WORKTOOL_WEBHOOK_TOKENS (a JSON object robot_id -> token) and/or
WORKTOOL_WEBHOOK_TOKENS_FILE (a file with the same object, refused when group or world may read it; its
entries win). With tokens configured, an unknown robot or a missing or wrong token is refused; without
any, every caller is accepted and a warning says so at start-up.

/metrics: with WORKTOOL_METRICS_TOKEN set it needs `Authorization: Bearer <token>`.

Comparisons are constant-time (hmac.compare_digest). Tokens are never logged: errors name the robot or the
file, never a value.
"""

from __future__ import annotations

import hmac
import logging
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote_plus

import orjson

from worktool.metrics_auth import MetricsAuth as MetricsAuth  # re-exported: the gateway app uses it
from worktool.settings import Settings

log = logging.getLogger(__name__)

TOKEN_PARAM = b"token"
# Compared against when the robot is unknown, so that an unknown robot costs the same as a wrong token.
_NO_TOKEN = b"\x00" * 32


class AuthConfigError(ValueError):
    """Webhook tokens configured in a way the gateway refuses to start with."""


def _parse_tokens(text: str, source: str) -> dict[str, str]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        # The message of a JSON error quotes no input, but keep it to the position anyway.
        raise AuthConfigError(f"{source} is not valid JSON (at position {e.pos})") from None
    if not isinstance(value, dict):
        raise AuthConfigError(f"{source} must be a JSON object {{robot_id: token}}")
    tokens: dict[str, str] = {}
    for robot_id, token in value.items():
        if not isinstance(token, str) or not token.strip():
            raise AuthConfigError(f"{source}: the token of robot {robot_id!r} must be a non-empty string")
        if not robot_id.strip():
            raise AuthConfigError(f"{source}: an empty robot id")
        tokens[robot_id.strip()] = token.strip()
    return tokens


def read_tokens_file(path: Path) -> dict[str, str]:
    """The tokens of a secrets file; refused when anyone but its owner may read or write it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuthConfigError(
                f"webhook tokens file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                f"run: chmod 600 {path}"
            )
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AuthConfigError(f"cannot read webhook tokens file {path}: {e.strerror}") from None
    return _parse_tokens(text, f"webhook tokens file {path}")


def load_webhook_tokens(settings: Settings) -> dict[str, str]:
    """robot_id -> token from WORKTOOL_WEBHOOK_TOKENS and WORKTOOL_WEBHOOK_TOKENS_FILE (empty: open)."""
    tokens: dict[str, str] = {}
    if settings.webhook_tokens and settings.webhook_tokens.strip():
        tokens.update(_parse_tokens(settings.webhook_tokens, "WORKTOOL_WEBHOOK_TOKENS"))
    if settings.webhook_tokens_file is not None:
        tokens.update(read_tokens_file(settings.webhook_tokens_file))
    return tokens


def token_of(query_string: bytes) -> bytes | None:
    """The `token` query parameter as bytes (None when absent)."""
    for part in query_string.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == TOKEN_PARAM:
            return unquote_plus(value.decode("latin-1"), encoding="utf-8", errors="replace").encode()
    return None


def strip_token(query_string: str) -> str:
    """A query string fit for a log line or a record: the token's value replaced."""
    parts = [
        "token=***" if part.partition("=")[0] == TOKEN_PARAM.decode() else part
        for part in query_string.split("&")
    ]
    return "&".join(parts)


class WebhookAuth:
    """Checks a webhook's robot id and token. Open (allows everything) when no token is configured."""

    def __init__(self, tokens: Mapping[str, str]):
        self._tokens = {robot_id: token.encode() for robot_id, token in tokens.items()}

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        auth = cls(load_webhook_tokens(settings))
        if auth.open:
            log.warning(
                "webhook is OPEN: no WORKTOOL_WEBHOOK_TOKENS / WORKTOOL_WEBHOOK_TOKENS_FILE configured, so "
                "anyone who can reach this port may post messages as any robot; register callback URLs "
                "with &token=... and configure the tokens"
            )
        else:
            log.info("webhook tokens configured for %d robot(s)", len(auth._tokens))
        return auth

    @property
    def open(self) -> bool:
        return not self._tokens

    def refusal(self, robot_id: str, query_string: bytes) -> str | None:
        """None when the caller may post; otherwise why not (for the DLQ, never containing the token)."""
        if self.open:
            return None
        given = token_of(query_string)
        expected = self._tokens.get(robot_id)
        # Always one comparison of the given token, whether or not the robot is known.
        matches = hmac.compare_digest(given or b"", expected or _NO_TOKEN)
        if expected is None:
            return "unauthorized: unknown robot"
        if given is None:
            return "unauthorized: missing token"
        if not matches:
            return "unauthorized: wrong token"
        return None
