"""Prometheus counters of the dataflow process. Bytewax serves the default registry on its dataflow API
(`BYTEWAX_DATAFLOW_API_ENABLED=1`, port 3030 by default), which docker-compose's Prometheus scrapes."""

from prometheus_client import Counter

DLQ_RECORDS = Counter("worktool_dataflow_dlq_records_total", "Raw records rejected to the DLQ", ["kind"])
MESSAGES_CLASSIFIED = Counter(
    "worktool_dataflow_messages_classified_total", "Messages classified, by deciding path", ["decided_by"]
)
DUPLICATE_REPORTS = Counter(
    "worktool_dataflow_duplicate_reports_total", "Reports of a message another robot had already reported"
)
