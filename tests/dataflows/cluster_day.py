"""The sample day's flow for `python -m bytewax.run` (one process of a cluster in tests/dataflows/test_cluster.py):
monitor events to one JSONL file per worker, in the order that worker emitted them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from classifiers import load_type_model
from dataflows.flow import FlowOptions, FlowSinks, build_flow
from dataflows.sources import ArchiveSource
from operators.classify import RuleClassifier
from worktool.config import load_config

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "commands" / "data" / "sample_day.jsonl"
CONFIG_PATH = REPO / "config" / "business.example.yaml"
UNTIL = datetime(2025, 3, 20, tzinfo=UTC)  # long after the sample day: every timer is due


class _FilePart(StatelessSinkPartition[Any]):
    def __init__(self, path: Path) -> None:
        self._f = path.open("ab")

    def write_batch(self, items: list[Any]) -> None:
        self._f.writelines(e.to_json() + b"\n" for e in items)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class PerWorkerFiles(DynamicSink[Any]):
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FilePart:
        return _FilePart(self.directory / f"events-{worker_index}.jsonl")


def day_flow(sinks: FlowSinks, archive: Path = SAMPLE, batch_size: int = 1000) -> Dataflow:
    config = load_config(CONFIG_PATH)
    source = ArchiveSource(
        archive, timedelta(seconds=60), batch_size=batch_size, lateness=timedelta(seconds=1), until=UNTIL
    )
    return build_flow(
        source, sinks, RuleClassifier(config, model=load_type_model("builtin")), FlowOptions(config=config)
    )


def stamped_day(path: Path, missing: int) -> Path:
    """The sample day with the gateway's sequence stamps, record `missing` never arriving (a gap)."""
    lines = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    with path.open("wb") as f:
        for n, record in enumerate(lines, start=1):
            if n != missing:
                f.write(orjson.dumps({**record, "seq": {"gw": "gw-test", "n": n}}) + b"\n")
    return path


def flow(archive: str, out_dir: str) -> Dataflow:
    return day_flow(FlowSinks(events=[PerWorkerFiles(Path(out_dir))]), Path(archive))
