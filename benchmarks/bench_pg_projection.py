"""The Postgres projection alone (not a test): monitor events of a replay written by
sinks.postgres.write_events into a fresh embedded database, in batches, timed.

    .venv/bin/python benchmarks/bench_pg_projection.py [--records 20000] [--batch 1000] [--repo DIR]

--repo: measure another checkout's sinks/postgres.py (same venv), e.g. the code before the COPY path,
in the same sitting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repo", type=Path, default=HERE)
    ap.add_argument("--smoke", action="store_true", help="500 records: only shows the benchmark works")
    args = ap.parse_args()
    if args.smoke:
        args.records, args.batch = 500, 100
    sys.path.insert(0, str(args.repo.resolve()))
    sys.path.insert(1, str(HERE / "benchmarks"))
    import psycopg
    from bench_dataflow import synthetic
    from bytewax.testing import TestingSink, run_main

    from classifiers import build_classifier, call_log_events
    from dataflows.flow import FlowOptions, FlowSinks, build_flow
    from dataflows.sources import ArchiveSource
    from infra.embedded import EmbeddedPostgres
    from infra.migrate import apply_up
    from sinks.postgres import write_events
    from worktool.config import BusinessConfig
    from worktool.settings import Settings

    settings, config = Settings(), BusinessConfig()
    classifier = build_classifier(settings, config)
    events: list = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "archive.jsonl"
        path.write_bytes(b"\n".join(synthetic(args.records)) + b"\n")
        source = ArchiveSource(path, timedelta(seconds=settings.replay_tick_interval_s))
        flow = build_flow(source, FlowSinks(events=[TestingSink(events)]), classifier,
                          FlowOptions.from_settings(settings, config), extra_events=call_log_events(classifier))  # fmt: skip
        run_main(flow)
        with EmbeddedPostgres(Path(d) / "pg") as pg:
            apply_up(pg.url)
            with psycopg.connect(pg.url, autocommit=True) as conn:
                started = time.perf_counter()
                for i in range(0, len(events), args.batch):
                    write_events(conn, events[i : i + args.batch])
                first = time.perf_counter() - started
                started = time.perf_counter()
                for i in range(0, len(events), args.batch):  # a replay after a crash: rows unchanged
                    write_events(conn, events[i : i + args.batch])
                again = time.perf_counter() - started
    print(
        f"{args.repo}: {len(events)} events in batches of {args.batch}: first write {first:.2f} s "
        f"({len(events) / first:,.0f} events/s), written again {again:.2f} s "
        f"({len(events) / again:,.0f} events/s); load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
