"""`worktool kb import FILE` and `worktool kb search QUERY`: the local knowledge base (docs/operations.md,
"Knowledge base").

`import` reads a Markdown (articles: each heading a passage), CSV (question,answer[,tags]) or JSONL file
(questions and answers, articles), or the shipped set with `--builtin`, segments each passage and upserts
it into kb_passages of DATABASE_URL (infra/knowledge.py): a re-import of the same file changes nothing,
`--replace` also removes the passages of that source the file no longer has. A progress bar on a terminal,
a summary at the end.

`search` asks the knowledge base the settings configure (TaxKB when WORKTOOL_TAXKB_BASE_URL is set, else
PostgreSQL) and prints the passages, as the reply path would get them.

Exit codes: 0 done; 1 (search) no passage found; 2 bad usage: a file that cannot be read (its line is
named), DATABASE_URL unset or unreachable, the table missing (migrations not applied).
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from importlib import resources
from pathlib import Path
from typing import Any

from worktool.settings import Settings

BUILTIN = "kb_channels_shop.jsonl"  # WeChat Channels (视频号) shop operations, 47 questions and answers


class UsageError(Exception):
    """Exit code 2, with this message."""


def builtin_set() -> tuple[str, bytes]:
    """The shipped knowledge set: its name and bytes (package data of `commands`)."""
    return BUILTIN, resources.files("commands").joinpath("data", BUILTIN).read_bytes()


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def read_entries(file: Path | None, builtin: bool, encoding: str) -> tuple[str, list[Any]]:
    """(default source name, entries) of the file or the shipped set; KbFileError names the line."""
    from operators.knowledge import KbFileError, decode, file_format, parse_file

    if builtin == (file is not None):
        raise UsageError("give a FILE or --builtin (one of them)")
    try:
        if file is None:
            name, data = builtin_set()
        else:
            name = file.name
            file_format(name)  # the suffix first: no point reading a .pdf
            try:
                data = file.read_bytes()
            except OSError as e:
                raise UsageError(f"cannot read {file}: {e.strerror or e}") from None
        return name, parse_file(name, decode(data, encoding))
    except KbFileError as e:
        name = file.name if file is not None else BUILTIN
        where = f"{file or name}:{e.line}" if e.line is not None else str(file or name)
        raise UsageError(f"{where}: {e.message}") from None


def cli_kb_import(
    file: Path | None,
    *,
    builtin: bool = False,
    source: str | None = None,
    replace: bool = False,
    encoding: str = "utf-8",
    progress: bool | None = None,
    settings: Settings | None = None,
) -> int:
    import psycopg
    from rich.console import Console

    from infra.knowledge import count_passages, import_entries

    err = Console(stderr=True, highlight=False)
    settings = settings or Settings()
    try:
        name, entries = read_entries(file, builtin, encoding)
        if missing := settings.missing("database_url"):
            raise UsageError(f"{missing[0]} not set: point it at the stack's database")
        assert settings.database_url
        source = (source or name).strip()
        if not source:
            raise UsageError("--source must not be empty")
        show = sys.stderr.isatty() if progress is None else progress
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn, _progress(show) as bar:
            task = bar.add_task(f"importing {source}", total=len(entries)) if bar is not None else None
            advance = (lambda: bar.advance(task)) if bar is not None else None
            result = import_entries(conn, entries, source, replace=replace, on_entry=advance)
            total = count_passages(conn)
    except UsageError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    except psycopg.errors.UndefinedTable:
        err.print("[red]kb_passages does not exist: apply the migrations (worktool migrate up)[/red]")
        return 2
    except psycopg.OperationalError as e:
        err.print(f"[red]cannot reach the database (DATABASE_URL): {str(e).strip()}[/red]")
        return 2
    summary = (
        f"{source}: {result.read} passages read, {result.inserted} new, {result.updated} updated, "
        f"{result.unchanged} unchanged"
    )
    if result.duplicates:
        summary += f", {result.duplicates} repeated in the file"
    if replace:
        summary += f", {result.removed} removed"
    print(f"{summary}; {total} passages in the knowledge base")
    return 0


def cli_kb_search(query: str, limit: int = 5, as_json: bool = False, settings: Settings | None = None) -> int:
    from rich.console import Console

    from infra.knowledge import KnowledgeBaseConfigError, knowledge_base_from_settings

    err = Console(stderr=True, highlight=False)
    settings = settings or Settings()
    try:
        kb = knowledge_base_from_settings(settings)
    except KnowledgeBaseConfigError as e:
        err.print(f"[red]{e}[/red]")
        return 2
    if kb is None:
        err.print("[red]no knowledge base configured: set WORKTOOL_TAXKB_BASE_URL or DATABASE_URL[/red]")
        return 2
    try:
        passages = kb.search(query, limit)
    finally:
        close = getattr(kb, "close", None)
        if close is not None:
            close()
    if as_json:
        for p in passages:
            print(json.dumps(p.model_dump(), ensure_ascii=False))
    else:
        out = Console(highlight=False)
        for rank, p in enumerate(passages, 1):
            out.print(f"[bold]{rank}. {p.title}[/bold]  ({kb.name} {p.source}, score {p.score:.3f})")
            out.print(f"   {p.text}")
    if not passages:
        err.print(f"no passages for {query!r} ({kb.name})")
        return 1
    return 0
