"""Raw records for flows on in-memory sources: the bytes WorkTool callbacks become on worktool.raw,
and the data ticks the live source interleaves with them. Import as `tests.dataflows.records`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from dataflows.sources import with_data_ticks

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def raw(kind: str, robot: str, seconds: float, body: dict) -> bytes:
    """A raw record of `kind` reported by `robot`, received `seconds` after T0."""
    at = (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    return orjson.dumps({"kind": kind, "robot_id": robot, "received_at": at, "body": body})


def msg(text: str, sender: str, group: str = "A群", **extra: Any) -> dict:
    """The body of a group text message callback."""
    return {
        "spoken": text,
        "rawSpoken": text,
        "receivedName": sender,
        "groupName": group,
        "groupRemark": "",
        "roomType": 1,
        "atMe": False,
        "textType": 1,
        **extra,
    }


def with_ticks(records: list[bytes]) -> list[Any]:
    """The records with data ticks between them, as the live source emits them (unreadable records
    carry no time)."""
    rows = []
    for r in records:
        try:
            rows.append((datetime.fromisoformat(orjson.loads(r)["received_at"].replace("Z", "+00:00")), r))
        except Exception:
            rows.append((None, r))
    return with_data_ticks(rows, timedelta(seconds=0.5))
