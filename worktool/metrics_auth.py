"""The bearer token of every /metrics (gateway, console, dataflow, dispatcher): WORKTOOL_METRICS_TOKEN.

With the token set, GET /metrics needs `Authorization: Bearer <token>` and answers 401 otherwise; without
it the endpoint is open (a part run alone on loopback). `worktool up` always sets one (generated into the
data directory when not given). The comparison is constant-time."""

from __future__ import annotations

import hmac

UNAUTHORIZED_BODY = b"unauthorized\n"
CHALLENGE = 'Bearer realm="metrics"'


class MetricsAuth:
    """Bearer token for GET /metrics; open when WORKTOOL_METRICS_TOKEN is unset."""

    def __init__(self, token: str | None):
        self._expected = f"Bearer {token}".encode() if token else None

    def allows(self, authorization: str | None) -> bool:
        if self._expected is None:
            return True
        return hmac.compare_digest((authorization or "").encode(), self._expected)
