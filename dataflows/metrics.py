"""Prometheus counters of the dataflow process. Bytewax serves the default registry on its dataflow API
(`BYTEWAX_DATAFLOW_API_ENABLED=1`, port 3030 by default), which docker-compose's Prometheus scrapes."""

from prometheus_client import Counter

DLQ_RECORDS = Counter("worktool_dataflow_dlq_records_total", "Raw records rejected to the DLQ", ["kind"])
MESSAGES_CLASSIFIED = Counter(
    "worktool_dataflow_messages_classified_total", "Messages classified, by deciding path", ["decided_by"]
)
for _path in ("rules", "model", "llm"):  # every path exported from the start, at 0 until it decides one
    MESSAGES_CLASSIFIED.labels(_path)
DUPLICATE_REPORTS = Counter(
    "worktool_dataflow_duplicate_reports_total", "Reports of a message another robot had already reported"
)
LATE_RECORDS = Counter(
    "worktool_dataflow_late_records_total",
    "Records stamped before the watermark when they reached their shard (later than the allowed lateness)",
)
STEP_FAILURES = Counter(
    "worktool_dataflow_step_failures_total", "Items a stateful step failed on (sent to the DLQ)", ["step"]
)
OFFSET_RESETS = Counter(
    "worktool_dataflow_offset_resets_total",
    "Kafka partitions re-read from the beginning because their topic was recreated or the resume offset "
    "was beyond its end",
    ["topic"],
)
STEP_BUDGET_EXCEEDED = Counter(
    "worktool_dataflow_step_budget_exceeded_total",
    "Records a step had not finished within WORKTOOL_STEP_BUDGET_S (dead-lettered, or put on the poison list)",
    ["step"],
)
POISON_SKIPPED = Counter(
    "worktool_dataflow_poison_skipped_total",
    "Records on the poison list (they stalled a step before a restart), dead-lettered and skipped",
    ["step"],
)
