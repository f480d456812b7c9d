"""Prometheus metrics of the dispatcher, served on 127.0.0.1:WORKTOOL_DISPATCHER_METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "worktool_dispatcher_requests_total",
    "HTTP requests to WorkTool or a webhook (each try), by channel and outcome: accepted, rejected, "
    "rate_limited (429), network_error, no_answer (timed out or dropped after sending), unknown",
    ["channel", "outcome"],
)
COMMANDS = Counter(
    "worktool_dispatcher_commands_total",
    "Commands handled, by channel and outcome: accepted, failed, unknown, not_sendable, already_done, "
    "duplicate, invalid",
    ["channel", "outcome"],
)
BATCH_SIZE = Histogram(
    "worktool_dispatcher_batch_size",
    "Commands per sendRawMessage request",
    buckets=(1, 2, 5, 10, 20, 50, 100),
)
RATE_LIMIT_WAIT = Histogram(
    "worktool_dispatcher_rate_limit_wait_seconds",
    "Time spent waiting for the shared rate limiter before a request to WorkTool",
    buckets=(0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
REQUEST_SECONDS = Histogram(
    "worktool_dispatcher_request_seconds",
    "Time from the first try to the last answer of a request, retries and backoff included",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
)
RECORD_ERRORS = Counter(
    "worktool_dispatcher_record_errors_total", "Accepted records the broker did not acknowledge (retried)"
)
