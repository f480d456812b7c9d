"""`worktool replay` and `worktool archive` on the command line: progress on a terminal, a summary at
the end, clear errors. The work is dataflows/replay.py."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, nullcontext
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from classifiers import ClassifierUnavailable
from dataflows.collector import tune_collector
from dataflows.replay import RecordedAnswers, ReplayError, dump_topics, replay_archive
from infra.archive_io import ArchiveError, compression_for
from worktool.config import ConfigError
from worktool.models import to_utc
from worktool.settings import get_settings

err = Console(stderr=True)


class RateColumn(ProgressColumn):
    """Records per second, over the last few seconds (rich's own speed estimate)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} records/s", style="progress.data.speed")


def _progress(enabled: bool) -> Progress | nullcontext:
    if not enabled:
        return nullcontext()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def parse_until(value: str | None) -> datetime | None:
    """`--until`: an ISO-8601 time with its UTC offset ("2026-02-11T00:00:00+08:00" or "...Z")."""
    if value is None:
        return None
    try:
        return to_utc(value)
    except ValueError as e:
        raise typer.BadParameter(
            f"{value!r}: {e} (e.g. 2026-02-11T00:00:00+08:00)", param_hint="--until"
        ) from e


def cli_replay(
    file: Path, out: Path | None, progress: bool | None, until: datetime | None = None, workers: int = 1
) -> int:
    show = sys.stderr.isatty() if progress is None else progress
    tune_collector(get_settings().gc_threshold)  # this process runs the replay (or waits for its workers)
    started = time.perf_counter()
    cpu: list[float] = []
    recorded: list[RecordedAnswers] = []

    def on_answers(answers: RecordedAnswers) -> None:
        recorded.append(answers)
        err.print(answers.describe())

    try:
        with ExitStack() as stack:
            stream = stack.enter_context(out.open("wb")) if out else sys.stdout.buffer
            bar = stack.enter_context(_progress(show))
            task = bar.add_task("replay", total=None) if bar is not None else None
            records, rejected = replay_archive(
                file,
                stream,
                on_start=(lambda n: bar.update(task, total=n)) if bar is not None else None,
                on_progress=(lambda n: bar.advance(task, n)) if bar is not None else None,
                until=until,
                workers=workers,
                worker_cpu=cpu,
                on_answers=on_answers,
            )
    except (ConfigError, ClassifierUnavailable, ArchiveError, ReplayError) as e:
        err.print(f"[red]{e}[/red]")
        return 2
    elapsed = time.perf_counter() - started
    rate = records / elapsed if elapsed > 0 else 0.0
    answers = recorded[0] if recorded else RecordedAnswers()
    used = (
        f"{answers.used} recorded LLM classifications used"
        if answers.total
        else "no recorded LLM answers: classification by the rules, replies from the templates"
    )
    err.print(
        f"replayed {records} records in {elapsed:.1f} s ({rate:,.0f} records/s, "
        f"{workers} worker{'s' if workers > 1 else ''}); {len(rejected)} rejected; {used}"
    )
    if cpu:
        err.print("workers' CPU time: " + ", ".join(f"{c:.1f} s" for c in cpu))
    for r in rejected[:5]:
        err.print(f"  rejected: {r.reason}")
    return 0


def cli_archive(out: Path) -> int:
    settings = get_settings()
    if not settings.kafka_bootstrap_servers:
        err.print("[red]KAFKA_BOOTSTRAP_SERVERS is not set (is `worktool up` running?)[/red]")
        return 2
    with _progress(sys.stderr.isatty()) as bar:
        task = bar.add_task("archive", total=None) if bar is not None else None
        n = dump_topics(
            settings.kafka_bootstrap_servers,
            [settings.topic_raw, settings.topic_control, settings.topic_llm],
            out,
            on_record=(lambda: bar.advance(task)) if bar is not None else None,
            optional=[settings.topic_llm],
            unordered=[settings.topic_llm],
        )
    err.print(
        f"archived {n} records from {settings.topic_raw}, {settings.topic_control} and {settings.topic_llm} "
        f"to {out} ({compression_for(out)})"
    )
    return 0
