"""The dispatcher after a broker restart (issue 13, #2): the embedded broker comes back empty and
worktool.commands is created again; commands written to the new topic must be sent, none skipped
because the consumer kept its position in the old topic.

Measured: unlike the dataflow's and the console's assign()-based consumers, the dispatcher recovers by
itself: it is a consumer-group member, the new broker does not know its member id, so it rejoins, gets
its partitions assigned again with no committed offset, and `auto.offset.reset=earliest` starts it at
the beginning of the new topic. This test keeps it that way. What did break (3 runs of 4 before the
fix): its idempotent producer of `accepted` records failed fatally after the restart
(OUT_OF_ORDER_SEQUENCE_NUMBER) and the dispatcher died; it now replaces the producer."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from infra.embedded import EmbeddedKafka, free_port
from infra.kafka_admin import ensure_topics
from tests.dispatcher.helpers import command, produce_commands, running_dispatcher
from tests.fakes.worktool_server import FakeWorkTool
from tests.support import chaos_scale, wait_until
from worktool.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def test_commands_written_to_a_recreated_topic_are_all_sent(tmp_path: Path, redis_url: str) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", port=free_port()).start()
    suffix = uuid.uuid4().hex[:8]
    with FakeWorkTool() as fake:
        settings = Settings(  # type: ignore[call-arg]
            kafka_bootstrap_servers=broker.url,
            redis_url=redis_url,
            data_dir=tmp_path / "data",
            api_base_url=fake.url,
            dispatcher_group=f"dispatcher-{suffix}",
            dispatch_rate_key=f"test:rate:{suffix}",
            dispatch_rate_requests=1000,
            dispatch_rate_window_s=1.0,
            dispatch_rate_margin_s=0.0,
            dispatcher_metrics_port=0,
        )
        topics = {settings.topic_raw: 3, settings.topic_commands: 3}
        ensure_topics(broker.url, topics)
        robot = f"wt_{suffix}"
        try:
            with running_dispatcher(settings):
                before = [command(robot, content=f"旧{i}") for i in range(20 * chaos_scale())]
                produce_commands(settings, before)
                wait_until(
                    lambda: sum(len(r.items) for r in fake.sends()) >= len(before),
                    60,
                    what="the commands before",
                )

                os.kill(broker.pid, signal.SIGKILL)
                time.sleep(1)
                broker.stop()
                broker.start()
                ensure_topics(broker.url, topics)
                after = [command(robot, content=f"新{i}") for i in range(3)]  # fewer than the old position
                produce_commands(settings, after)

                def sent_after() -> set[str]:
                    sent = {item.get("receivedContent") for r in fake.sends() for item in r.items}
                    return sent & {c.content for c in after}

                wait_until(lambda: len(sent_after()) == len(after), 60, what="the commands after the restart")
        finally:
            broker.stop()
