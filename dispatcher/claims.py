"""Idempotency claims: one Redis key per command id, checked before anything is sent.

A claim is taken (SET NX) right before the request that carries the command and moves on as the
request does:

- `sending`: the request may be on its way. Found after a restart, the dispatcher died between the send
  and its answer: the command is reported as outcome-unknown, never sent again.
- `answered:<answer key>`: WorkTool (or the webhook) answered; the accepted record may not be on
  the broker yet. The record's body is stored once per request under the answer key. Found after a
  restart, that same record is written again.
- `done`: the accepted record is on the broker. Found again (a re-read after a crash, a duplicate
  command record), the command is skipped.

Claims expire after the configured TTL (7 days): longer than any redelivery can lag.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis

KEY_PREFIX = "worktool:dispatcher:claim:"
ANSWER_PREFIX = "worktool:dispatcher:answer:"
SENDING = "sending"
DONE = "done"
ANSWERED = "answered:"

# Takes every key that is free; returns each key's previous value ("" when it was free).
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'EX', ARGV[2]) then
    out[i] = ''
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""

ClaimState = Literal["new", "sending", "answered", "done"]


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    answer_key: str = ""  # where the accepted body is stored, for "answered"


def _read(value: bytes | str) -> Claim:
    raw = value.encode() if isinstance(value, str) else value
    if not raw:
        return Claim("new")
    if raw.startswith(ANSWERED.encode()):
        return Claim("answered", raw[len(ANSWERED) :].decode())
    if raw == DONE.encode():
        return Claim("done")
    return Claim("sending")


class ClaimStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl_s = ttl_s
        self._claim = client.register_script(_CLAIM)

    @staticmethod
    def key(command_id: str) -> str:
        return KEY_PREFIX + command_id

    def claim(self, command_ids: Sequence[str]) -> dict[str, Claim]:
        """Claim the free ids as `sending`; every id's claim as it was before this call."""
        if not command_ids:
            return {}
        previous = self._claim(keys=[self.key(c) for c in command_ids], args=[SENDING, self._ttl_s])
        return {c: _read(v) for c, v in zip(command_ids, previous, strict=True)}

    def _set(self, command_ids: Sequence[str], value: bytes) -> None:
        pipe = self._client.pipeline(transaction=False)
        for command_id in command_ids:
            pipe.set(self.key(command_id), value, ex=self._ttl_s)
        pipe.execute()

    def answered(self, command_ids: Sequence[str], accepted_body: bytes) -> None:
        """Store the request's accepted body once, and point each command's claim at it."""
        answer_key = ANSWER_PREFIX + uuid.uuid4().hex
        self._client.set(answer_key, accepted_body, ex=self._ttl_s)
        self._set(command_ids, (ANSWERED + answer_key).encode())

    def answer_body(self, claim: Claim) -> bytes | None:
        """The accepted body an `answered` claim points at (None if it is gone)."""
        value = self._client.get(claim.answer_key)
        return bytes(value) if value is not None else None

    def done(self, command_ids: Sequence[str]) -> None:
        self._set(command_ids, DONE.encode())
