"""Helpers of the dispatcher tests: command records, a dispatcher in a thread, and a tail of the
accepted records on worktool.raw."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from dispatcher.service import Dispatcher
from tests.fakes.worktool_server import Behaviour, SeenRequest, accept
from tests.support import produce
from worktool.models import CommandCause, CommandRecord
from worktool.settings import Settings


def command(
    robot_id: str | None,
    *,
    channel: str = "wecom",
    target: str = "视频号运营A群",
    content: str = "您好，已收到您的问题，我们马上处理。",
    at_list: list[str] | None = None,
    due_in_s: float = -1.0,
) -> CommandRecord:
    return CommandRecord(
        command_id=f"cmd-{uuid.uuid4().hex}",
        channel=channel,  # type: ignore[arg-type]
        robot_id=robot_id,
        target=target,
        content=content,
        at_list=at_list or [],
        due_time=datetime.now(UTC) + timedelta(seconds=due_in_s),
        cause=CommandCause(event="reply_scheduled", message_id=f"msg-{uuid.uuid4().hex[:8]}"),
    )


def produce_commands(settings: Settings, commands: Iterable[CommandRecord]) -> None:
    assert settings.kafka_bootstrap_servers
    produce(
        settings.kafka_bootstrap_servers,
        settings.topic_commands,
        [(c.robot_id or c.channel, c.to_json()) for c in commands],
    )


class ByKey:
    """Responder for the fake: behaviours queued per robot id (sendRawMessage) or per path (webhooks),
    so that tests sharing one dispatcher and one fake never see each other's scripts."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[Behaviour]] = defaultdict(deque)
        self._lock = threading.Lock()

    def script(self, key: str, *behaviours: Behaviour) -> None:
        with self._lock:
            self.queues[key].extend(behaviours)

    def __call__(self, seen: SeenRequest) -> Behaviour:
        key = seen.robot_id if seen.is_send else seen.path
        with self._lock:
            queue = self.queues.get(key)
            return queue.popleft() if queue else accept()


@contextmanager
def running_dispatcher(settings: Settings) -> Iterator[Dispatcher]:
    stop = threading.Event()
    dispatcher = Dispatcher(settings, stop)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            dispatcher.run()
        except BaseException as e:  # surfaced by the test
            errors.append(e)

    thread = threading.Thread(target=run, name="dispatcher", daemon=True)
    thread.start()
    try:
        yield dispatcher
    finally:
        stop.set()
        thread.join(60)  # a record being retried gives up 30 s after the stop (recorder.py)
    assert not thread.is_alive(), "the dispatcher did not stop"
    assert not errors, errors


class RawTail:
    """Reads worktool.raw from the beginning and keeps every accepted record, indexed by command id."""

    def __init__(self, settings: Settings) -> None:
        assert settings.kafka_bootstrap_servers
        self.topic = settings.topic_raw
        self.records: list[dict[str, Any]] = []
        self.keys: list[bytes] = []
        self._consumer = Consumer(
            {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"tail-{uuid.uuid4().hex}"}
        )
        parts = self._consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions
        self._consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])

    def poll(self, timeout: float = 0.2) -> None:
        for message in self._consumer.consume(1000, timeout):
            if message.error():
                continue
            value = orjson.loads(message.value())
            if value.get("kind") == "accepted":
                self.records.append(value)
                self.keys.append(message.key())

    def for_command(self, command_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if command_id in r["body"]["commandIds"]]

    def wait_for(self, command_ids: Iterable[str], timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every accepted record that names one of `command_ids`, once each id has at least one."""
        wanted = set(command_ids)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            seen = {c for r in self.records for c in r["body"]["commandIds"]}
            if wanted <= seen:
                return [r for r in self.records if wanted & set(r["body"]["commandIds"])]
            if time.monotonic() > deadline:
                raise AssertionError(f"no accepted record for {len(wanted - seen)} of {len(wanted)} commands")

    def settle(self, idle_s: float = 1.0) -> None:
        """Read until nothing new arrives for `idle_s` (to catch records written twice)."""
        last_count, last_change = len(self.records), time.monotonic()
        while time.monotonic() - last_change < idle_s:
            self.poll()
            if len(self.records) != last_count:
                last_count, last_change = len(self.records), time.monotonic()

    def close(self) -> None:
        self._consumer.close()
