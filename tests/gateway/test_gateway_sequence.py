"""The gateway's sequence stamp (loss detection, docs/rules.md §9): every acknowledged raw record
carries {gw, n}, numbered in order from 1; a number taken for a record that was then not acknowledged
(503) is listed as `void` in the next one, so the dataflow does not wait for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson

from fakes.publisher import RecordingPublisher
from gateway.app import create_app
from gateway.producer import SpoolUnavailable
from tests.support import GROUP_MESSAGE
from worktool.models import RawRecord
from worktool.settings import Settings


class FailingOnce(RecordingPublisher):
    """Neither the broker nor the spool takes the records listed in `fail` (by call number, from 1)."""

    def __init__(self, fail: set[int]) -> None:
        super().__init__()
        self.fail, self.calls = fail, 0

    async def publish(self, topic: str, key: str | None, value: bytes) -> bool:
        self.calls += 1
        if self.calls in self.fail:
            raise SpoolUnavailable("disk full")
        return await super().publish(topic, key, value)


def post(publisher: RecordingPublisher, tmp_path: Path, n: int) -> list[int]:
    settings = Settings(data_dir=tmp_path)

    async def main() -> list[int]:
        app = create_app(settings, producer=publisher)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return [
                (
                    await client.post(
                        "/worktool/callback/message", params={"robotId": "wt_a"}, json=GROUP_MESSAGE
                    )
                ).status_code
                for _ in range(n)
            ]

    return asyncio.run(main())


def test_acknowledged_records_are_numbered_in_order(tmp_path: Path) -> None:
    publisher = RecordingPublisher()
    assert post(publisher, tmp_path, 5) == [200] * 5
    records = [RawRecord.model_validate(r) for r in publisher.on(Settings().topic_raw)]
    assert [r.seq.n for r in records] == [1, 2, 3, 4, 5]  # type: ignore[union-attr]
    assert len({r.seq.gw for r in records}) == 1  # type: ignore[union-attr]
    assert all("void" not in r for r in publisher.on(Settings().topic_raw))  # nothing voided: not written


def test_a_number_not_acknowledged_is_voided_in_the_next_record(tmp_path: Path) -> None:
    publisher = FailingOnce({2, 3})
    assert post(publisher, tmp_path, 4) == [200, 503, 503, 200]
    stamps = [r["seq"] for r in publisher.on(Settings().topic_raw)]
    assert [(s["n"], s.get("void", [])) for s in stamps] == [(1, []), (4, [2, 3])]


def test_a_record_without_seq_is_written_as_before() -> None:
    record = RawRecord(kind="online", robot_id="wt_a", received_at="2026-11-20T01:00:00Z", body={})  # type: ignore[arg-type]
    assert record.to_json() == orjson.dumps(record.model_dump(mode="json", exclude={"seq"}))
    assert b"seq" not in record.to_json()
