"""Encoding and decoding costs on the event path (not a test): which library for which step.

    .venv/bin/python benchmarks/bench_events.py [--rounds 5]

Events: every monitor event of the sample day's replay (commands/data/sample_day.jsonl). Raw records:
the synthetic records of bench_dataflow.py. CPU time per item, best of `--rounds`. msgspec rows are measured
only when msgspec is installed (it is not a dependency: see benchmarks/README.md, "Event encoding").
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataflows.replay import replay_archive  # noqa: E402
from worktool.events import MonitorEvent, _to_json, construct_from, has_long_digits, parse_event  # noqa: E402
from worktool.models import MessageCallback, MessageRecord, RawRecord  # noqa: E402
from worktool.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

try:
    import msgspec

    class Body(msgspec.Struct):
        spoken: str = ""
        rawSpoken: str = ""
        receivedName: str = ""
        groupName: str = ""
        groupRemark: str = ""
        roomType: int = 1
        atMe: bool = False
        textType: int = 1

    class Raw(msgspec.Struct):
        kind: str
        robot_id: str
        received_at: str
        body: Body

except ImportError:
    msgspec = None


def best(fn: Callable[[Any], Any], items: list[Any], rounds: int) -> float:
    """Best µs (CPU time of the process) per item over `rounds` passes."""
    times = []
    for _ in range(rounds):
        t = time.process_time()
        for x in items:
            fn(x)
        times.append(time.process_time() - t)
    return min(times) / len(items) * 1e6


def best_fresh(fn: Callable[[Any], Any], make: Callable[[], list[Any]], rounds: int) -> float:
    """Best µs per item over `rounds` passes, each over items made anew by `make` (not timed)."""
    times = []
    for _ in range(rounds):
        items = make()
        t = time.process_time()
        for x in items:
            fn(x)
        times.append(time.process_time() - t)
    return min(times) / len(items) * 1e6


def rebuilt(events: list[MonitorEvent]) -> list[MonitorEvent]:
    """The events as the flow makes them (`construct_from` + `.at()`), not encoded yet."""
    return [
        construct_from(type(e.data), dict(e.data.__dict__)).at(e.event_time, e.session_id, e.robot_id)
        for e in events
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="one round: only shows the benchmark works")
    args = ap.parse_args()
    if args.smoke:
        args.rounds = 1
    settings = Settings(config_path=REPO / "config" / "business.example.yaml", llm_provider=None)
    out = io.BytesIO()
    replay_archive(REPO / "commands" / "data" / "sample_day.jsonl", out, settings=settings)
    lines = out.getvalue().splitlines() * 5
    events: list[MonitorEvent] = [parse_event(x) for x in lines]
    same = all(
        orjson.dumps(e.model_dump(mode="json")) == e.__pydantic_serializer__.to_json(e) == _to_json(e)
        for e in events
    )
    rows = [
        (
            "encode event: orjson.dumps(model_dump(mode='json'))",
            best(lambda e: orjson.dumps(e.model_dump(mode="json")), events, args.rounds),
        ),
        (
            "encode event: pydantic-core to_json (no dict)",
            best(lambda e: e.__pydantic_serializer__.to_json(e), events, args.rounds),
        ),
        (
            "encode event: pydantic-core to_json + has_long_digits",
            best(lambda e: has_long_digits(e.__pydantic_serializer__.to_json(e)), events, args.rounds),
        ),
        (
            "encode event: events._to_json",
            best(_to_json, events, args.rounds),
        ),
        (
            "encode event: first to_json() of an event made by .at() (the sinks' call)",
            best_fresh(lambda e: e.to_json(), lambda: rebuilt(events), args.rounds),
        ),
        (
            "build event: construct_from + .at() (the flow's way)",
            best(
                lambda e: construct_from(type(e.data), dict(e.data.__dict__)).at(
                    e.event_time, e.session_id, e.robot_id
                ),
                events,
                args.rounds,
            ),
        ),
        (
            "encode event: to_json() again (kept bytes)",
            best(lambda e: e.to_json(), [*events[:1]] * len(events), args.rounds),
        ),
        ("decode event: parse_event (typed union)", best(parse_event, lines, args.rounds)),
    ]
    from benchmarks.bench_dataflow import synthetic

    raws = synthetic(5000)
    rows += [
        (
            "decode raw record: RawRecord + MessageCallback (two passes)",
            best(
                lambda b: MessageCallback.model_validate(RawRecord.model_validate_json(b).body),
                raws,
                args.rounds,
            ),
        ),
        (
            "decode raw record: MessageRecord, strict body (one pass, the dataflow's)",
            best(MessageRecord.model_validate_json, raws, args.rounds),
        ),
        ("decode raw record: orjson.loads only (no validation)", best(orjson.loads, raws, args.rounds)),
    ]
    if msgspec is not None:
        enc = msgspec.json.Encoder()
        rows.append(
            (
                "encode event: msgspec of model_dump(mode='json')",
                best(lambda e: enc.encode(e.model_dump(mode="json")), events, args.rounds),
            )
        )

        dec = msgspec.json.Decoder(Raw)
        rows.append(
            (
                "decode raw record: msgspec Struct (types only, none of our checks)",
                best(dec.decode, raws, args.rounds),
            )
        )
    print(
        f"{len(events)} events, pydantic-core bytes == orjson bytes == _to_json: {same} "
        "(orjson decides: it refuses ints beyond 64 bits)"
    )
    for name, us in rows:
        print(f"{us:8.2f} µs  {name}")


if __name__ == "__main__":
    main()
