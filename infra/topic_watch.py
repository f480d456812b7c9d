"""Notice a Kafka topic that was deleted and created again while a consumer runs: its topic id changes.

The embedded broker (Tansu) is memory-only and comes back from a restart without topics, which the
gateway's drainer or `worktool up` create again; a real cluster can be rebuilt. A consumer keeps its old
position, and Tansu never answers OFFSET_OUT_OF_RANGE for a position beyond the end of the new topic
(measured): the consumer silently waits until the new topic grows past it, and everything before that
is skipped. The dataflow's Kafka source, the dispatcher and the console's monitor stream each watch their
topics' ids with a `TopicWatch` and restart from the beginning of a recreated topic, loudly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from infra import kafka_clients

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0  # how often a running consumer asks the broker for its topics' ids


class TopicWatch:
    """The current ids of some topics, refreshed by one daemon thread every `interval_s` (one Admin
    describe request for all of them; nothing on the data path waits for it). A topic id that changes
    while a consumer runs means the topic was deleted and created again: the embedded broker forgets its
    topics on restart, a real cluster can be rebuilt. Tansu never answers OFFSET_OUT_OF_RANGE for an
    offset beyond the end of a recreated topic (measured: the consumer silently waits until the new
    topic grows past its old position, skipping everything before it), so the id is the signal."""

    def __init__(self, bootstrap: str, topics: list[str], interval_s: float = CHECK_INTERVAL_S) -> None:
        self.bootstrap = bootstrap
        self.topics = list(topics)
        self.interval_s = interval_s
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._admin: Any = None

    def current(self, topic: str) -> str | None:
        """The last id seen for `topic`, or None (not known yet, or a broker without topic ids)."""
        return self._ids.get(topic)

    def refresh(self) -> dict[str, str]:
        """Ask the broker now (blocking, a few ms); keeps the previous ids of topics it cannot describe."""
        from confluent_kafka import TopicCollection

        with self._lock:
            if self._admin is None:
                self._admin = kafka_clients.admin(self.bootstrap, logger=_quiet_log)
            futures = self._admin.describe_topics(TopicCollection(self.topics), request_timeout=5)
            for topic, future in futures.items():
                try:
                    description = future.result(6)
                except Exception:  # broker down, topic missing for now: keep what we knew
                    continue
                if description.topic_id:
                    self._ids[topic] = str(description.topic_id)
        return dict(self._ids)

    def start(self) -> TopicWatch:
        if self._thread is None:
            with contextlib.suppress(Exception):
                self.refresh()
            self._thread = threading.Thread(target=self._run, name="topic-watch", daemon=True)
            self._thread.start()
        return self

    def check_soon(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as e:  # never let the watch die; the next round retries
                log.debug("topic watch: %s", e)


# librdkafka's lines of the watch's admin client (connection refused while the broker is down): the
# consumers report the outage already.
_quiet_log = logging.getLogger("infra.topic_watch.kafka")
_quiet_log.setLevel(logging.WARNING)
