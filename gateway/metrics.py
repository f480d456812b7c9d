"""Prometheus metrics of the gateway.

Per-request cost is kept to two dict lookups and two increments: label children are cached, and the
latency histogram has one child per endpoint. With several uvicorn workers, `serve()` sets
PROMETHEUS_MULTIPROC_DIR before they start and /metrics aggregates every worker's files.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter(
    "worktool_gateway_requests_total",
    "HTTP requests answered, by endpoint and status code",
    ["endpoint", "status"],
)
LATENCY = Histogram(
    "worktool_gateway_request_seconds",
    "Time from reading the request to answering it, by endpoint",
    ["endpoint"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 3.0),
)
PRODUCE_ERRORS = Counter(
    "worktool_gateway_produce_errors_total", "Records the broker did not acknowledge, by error", ["error"]
)
SPOOLED = Counter("worktool_gateway_spooled_records_total", "Records written to the local spool")
DRAINED = Counter("worktool_gateway_drained_records_total", "Spooled records delivered to the broker")
REJECTED = Counter(
    "worktool_gateway_rejected_records_total",
    "Spooled records the broker refused for good (kept in rejected.jsonl)",
)
SPOOL_DEPTH = Gauge(
    "worktool_gateway_spool_depth",
    "Records in the local spool waiting for the broker",
    multiprocess_mode="livesum",
)
DLQ = Counter(
    "worktool_gateway_dlq_records_total", "Malformed callbacks sent to the dead-letter topic", ["reason"]
)

_requests: dict[tuple[str, int], Counter] = {}
_latency: dict[str, Histogram] = {}


def observe_request(endpoint: str, status: int, seconds: float) -> None:
    key = (endpoint, status)
    counter = _requests.get(key)
    if counter is None:
        counter = _requests[key] = REQUESTS.labels(endpoint, str(status))
    counter.inc()
    histogram = _latency.get(endpoint)
    if histogram is None:
        histogram = _latency[endpoint] = LATENCY.labels(endpoint)
    histogram.observe(seconds)


def render() -> tuple[bytes, str]:
    """Body and content type for GET /metrics."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
