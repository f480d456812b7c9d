"""The `worktool` command. Each subcommand is a thin shell over a module that does the work;
imports are lazy so `worktool --help` stays fast."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="worktool",
    help="Streaming backbone of the WorkTool AI customer-service operation.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
migrate_app = typer.Typer(
    help="Database migrations (numbered SQL files in migrations/).", no_args_is_help=True
)
app.add_typer(migrate_app, name="migrate")
alerts_app = typer.Typer(
    help="Manual alert actions, written to the control topic like the console API's (no API needed).",
    no_args_is_help=True,
)
app.add_typer(alerts_app, name="alerts")
users_app = typer.Typer(
    help="Console accounts (roles admin, supervisor, staff, inspector), stored with argon2 hashes.",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
templates_app = typer.Typer(
    help="The reply template catalogue (24 categories): list templates, render one with sample values.",
    no_args_is_help=True,
)
app.add_typer(templates_app, name="templates")
kb_app = typer.Typer(
    help="The knowledge base the AI replies quote: import files into PostgreSQL, search what is configured.",
    no_args_is_help=True,
)
app.add_typer(kb_app, name="kb")

# The services (and the migrations, which hold the owner's password) refuse placeholder or too-short
# secrets before they start (one check for all: Settings.weak_secrets).
SERVICES = frozenset({"up", "gateway", "dataflow", "dispatcher", "console", "migrate"})


@app.callback()
def _before_every_command(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand not in SERVICES:
        return
    from pydantic import ValidationError

    from worktool.settings import Settings

    try:
        problems = Settings().weak_secrets()
    except ValidationError:
        return  # the command itself reports settings it cannot read
    if problems:
        for problem in problems:
            typer.echo(f"refusing to start: {problem}", err=True)
        raise typer.Exit(2)


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="Play the bundled sample day through the live gateway.")
    ] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (default WORKTOOL_DATA_DIR).")] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Dataflow worker threads per process (WORKTOOL_DATAFLOW_WORKERS)."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes", help="Dataflow processes, a local cluster (WORKTOOL_DATAFLOW_PROCESSES)."
        ),
    ] = None,
) -> None:
    """Start the whole stack (embedded broker, PostgreSQL, Redis unless their URLs are set; migrations,
    gateway, dataflow) and supervise it until Ctrl-C / SIGTERM."""
    from commands.up import run_up

    raise typer.Exit(run_up(demo=demo, data_dir=data_dir, workers=workers, processes=processes))


@app.command()
def gateway() -> None:
    """Run only the HTTP gateway (uses KAFKA_BOOTSTRAP_SERVERS, REDIS_URL)."""
    from gateway.server import serve

    serve()


@app.command()
def dataflow(
    workers: Annotated[
        int | None,
        typer.Option("-w", "--workers", help="Worker threads per process (WORKTOOL_DATAFLOW_WORKERS; 1)."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            "-p",
            "--processes",
            help="Processes of the cluster (WORKTOOL_DATAFLOW_PROCESSES; 1). Without --process-id: start "
            "all of them on this machine and restart none alone (one ends: all stop).",
        ),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option(
            "-i", "--process-id", help="Run only this process of a cluster (WORKTOOL_DATAFLOW_PROCESS_ID)."
        ),
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(
            "-a",
            "--addresses",
            help="Every process's host:port, ';'-separated, the same everywhere (WORKTOOL_DATAFLOW_ADDRESSES).",
        ),
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="A local cluster writes process I's output to LOG_DIR/dataflow-I.log.")
    ] = None,
) -> None:
    """Run only the live dataflow (python -m bytewax.run with recovery in the data directory), as one
    process or as a cluster of processes (docs/operations.md, "A dataflow cluster")."""
    from dataflows.cluster import ClusterConfigError, resolve_shape
    from dataflows.runner import run_live
    from worktool.settings import get_settings

    try:
        shape = resolve_shape(
            get_settings(), workers=workers, processes=processes, process_id=process_id, addresses=addresses
        )
    except ClusterConfigError as e:
        typer.echo(f"worktool dataflow: {e}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_live(shape, log_dir=log_dir))


@app.command()
def dispatcher() -> None:
    """Send the commands of worktool.commands to WorkTool (sendRawMessage) and the phone/SMS webhooks
    under WorkTool's rate limit; write each answer to worktool.raw (uses KAFKA_BOOTSTRAP_SERVERS,
    REDIS_URL, WORKTOOL_API_BASE_URL)."""
    from commands.dispatcher import cli_dispatcher

    raise typer.Exit(cli_dispatcher())


@app.command()
def console(
    host: Annotated[str | None, typer.Option(help="Listen address (default WORKTOOL_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default WORKTOOL_API_PORT, 8081).")] = None,
) -> None:
    """Serve the console API (accounts, alert actions, read endpoints; OpenAPI at /docs). Beyond
    loopback it needs WORKTOOL_JWT_SECRET."""
    from commands.alerts import cli_console

    raise typer.Exit(cli_console(host, port))


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the alert).")]
ActorOption = Annotated[str, typer.Option("--actor", help="Who asks (an operator's name).")]
AlertIdArgument = Annotated[str, typer.Argument(help="The alert's id (alert_history.alert_id).")]


@alerts_app.command("cancel")
def alerts_cancel(alert_id: AlertIdArgument, reason: ReasonOption, actor: ActorOption) -> None:
    """Cancel an open alert (uses DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS)."""
    from commands.alerts import cli_alert_action

    raise typer.Exit(cli_alert_action("cancel_alert", alert_id, reason=reason, actor=actor))


@alerts_app.command("escalate")
def alerts_escalate(alert_id: AlertIdArgument, reason: ReasonOption, actor: ActorOption) -> None:
    """Raise an open alert one level, up to level 4 (uses DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS)."""
    from commands.alerts import cli_alert_action

    raise typer.Exit(cli_alert_action("escalate_alert", alert_id, reason=reason, actor=actor))


PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin instead of asking."
    ),
]


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option("--role", help="admin, supervisor, staff or inspector.")],
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Create an account in the database (uses DATABASE_URL); asks for the password twice."""
    from commands.users import cli_users_add

    raise typer.Exit(cli_users_add(username, role, password_stdin))


@users_app.command("list")
def users_list() -> None:
    """List the accounts of the users file and of the database."""
    from commands.users import cli_users_list

    raise typer.Exit(cli_users_list())


@users_app.command("hash")
def users_hash(password_stdin: PasswordStdinOption = False) -> None:
    """Print an argon2 hash of a password, for the users file (WORKTOOL_USERS_FILE)."""
    from commands.users import cli_users_hash

    raise typer.Exit(cli_users_hash(password_stdin))


@app.command("secrets-key")
def secrets_key() -> None:
    """Print a new random WORKTOOL_SECRETS_KEY (encrypts the LLM keys set through the console)."""
    from commands.users import cli_secrets_key

    raise typer.Exit(cli_secrets_key())


@kb_app.command("import")
def kb_import(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Markdown (.md: each heading a passage), CSV (.csv: question,answer[,tags]) or JSONL "
            "(.jsonl: {question, answer} or {title, text}) file.",
            dir_okay=False,
        ),
    ] = None,
    builtin: Annotated[
        bool, typer.Option("--builtin", help="Import the shipped set (WeChat Channels shop operations).")
    ] = False,
    source: Annotated[
        str | None, typer.Option(help="Name the passages' source (default: the file's name).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Also remove this source's passages the file no longer has.")
    ] = False,
    encoding: Annotated[
        str, typer.Option(help="The file's encoding (e.g. gb18030 for a CSV saved by Excel).")
    ] = "utf-8",
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar (default: when stderr is a terminal).")
    ] = None,
) -> None:
    """Import passages into the knowledge base in DATABASE_URL, segmented for Chinese full-text search;
    importing the same file again changes nothing. Exit 2 for a file it cannot read (with the line)."""
    from commands.kb import cli_kb_import

    raise typer.Exit(
        cli_kb_import(
            file, builtin=builtin, source=source, replace=replace, encoding=encoding, progress=progress
        )
    )


@kb_app.command("search")
def kb_search(
    query: Annotated[str, typer.Argument(help="A question, as an owner would ask it.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=50, help="At most this many.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON passage per line.")] = False,
) -> None:
    """Search the configured knowledge base (TaxKB if WORKTOOL_TAXKB_BASE_URL is set, else DATABASE_URL's)
    as the reply path does. Exit 1 when nothing matches."""
    from commands.kb import cli_kb_search

    raise typer.Exit(cli_kb_search(query, limit, as_json))


@migrate_app.command("up")
def migrate_up(
    target: Annotated[int | None, typer.Option(help="Stop after this version.")] = None,
) -> None:
    """Apply pending migrations."""
    from infra.migrate import cli_up

    raise typer.Exit(cli_up(target))


@migrate_app.command("down")
def migrate_down(
    steps: Annotated[int, typer.Option(help="How many migrations to roll back.")] = 1,
) -> None:
    """Roll back the newest applied migrations."""
    from infra.migrate import cli_down

    raise typer.Exit(cli_down(steps))


@migrate_app.command("status")
def migrate_status() -> None:
    """List migrations and whether each is applied."""
    from infra.migrate import cli_status

    raise typer.Exit(cli_status())


@migrate_app.command("logins")
def migrate_logins() -> None:
    """Create or update the parts' database login users named in WORKTOOL_DATABASE_URL_GATEWAY,
    _DATAFLOW and _CONSOLE (user and password from each URL), as members of their roles (migration 0006);
    runs with the owner's DATABASE_URL."""
    from infra.db_roles import cli_logins

    raise typer.Exit(cli_logins())


@app.command()
def replay(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL archive of raw records (plain, .zst or .gz).", exists=True, dir_okay=False
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write monitor events here (default stdout).")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar (default: when stderr is a terminal).")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="After the archive, advance the clock to this ISO-8601 time (with offset) so that "
            "what is due by then fires (expiries, escalation windows)."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Replay in this many processes, each a slice of the shards: the same events as one.",
        ),
    ] = 1,
) -> None:
    """Run the dataflow over an archive in event time; write the monitor events as JSONL."""
    from commands.replay import cli_replay, parse_until

    raise typer.Exit(cli_replay(file, out, progress, parse_until(until), workers))


@app.command()
def archive(
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Archive file to write (JSONL; zstd-compressed if it ends in .zst, gzip if .gz).",
        ),
    ],
) -> None:
    """Dump worktool.raw and worktool.control to a JSONL archive in event time (the format `replay`
    reads), streaming."""
    from commands.replay import cli_archive

    raise typer.Exit(cli_archive(out))


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


ReportFormatOption = Annotated[
    ReportFormat,
    typer.Option(
        "--format",
        "-f",
        case_sensitive=False,
        help="table: headline figures, desk members, alerts by type and level, the funnel. json: the row "
        "with the daily_report event's field names (plus generated_at). csv: one line per desk member "
        "(columns name, assigned, completed, open_at_end, reminders, not_followed_up, unfinished), after "
        "one header line with those names and nothing before it.",
    ),
]


@app.command()
def report(
    date: Annotated[
        str | None,
        typer.Option(
            "--date",
            "-d",
            help="The local day, YYYY-MM-DD (default: yesterday in the business configuration's time zone).",
        ),
    ] = None,
    fmt: ReportFormatOption = ReportFormat.table,
) -> None:
    """Print the after-sales daily report of one day (docs/rules.md §7), as the dataflow wrote it at 24:00
    event time (uses DATABASE_URL, WORKTOOL_CONFIG). Exit 1 when the day has no report yet, 2 for a bad
    date or no database."""
    from commands.report import cli_report

    raise typer.Exit(cli_report(date, fmt.value))


@templates_app.command("list")
def templates_list(
    category: Annotated[
        str | None,
        typer.Option(
            "--category", "-c", help="A category's code or Chinese name (e.g. complaint, 投诉处理)."
        ),
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option("--persona", "-p", help="Templates this persona may use (those for any persona too)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line instead of a table.")
    ] = False,
) -> None:
    """List the reply templates (id, category, name, personas, what the rules use them for, variables).
    Exit 2 for an unknown category or persona."""
    from commands.templates import cli_list

    raise typer.Exit(cli_list(category, persona, as_json))


@templates_app.command("test")
def templates_test(
    template_id: Annotated[
        str, typer.Argument(metavar="ID", help="The template's id (worktool templates list).")
    ],
    var: Annotated[
        list[str] | None, typer.Option("--var", "-v", help="name=value, over the sample value (repeatable).")
    ] = None,
    persona: Annotated[
        str | None,
        typer.Option("--persona", "-p", help="Apply this persona's emoji policy and length limit."),
    ] = None,
) -> None:
    """Render one template with sample values (WORKTOOL_CONFIG's replies.variables and --var over them).
    Exit 1 for an unknown id, 2 for an undeclared variable or a malformed --var."""
    from commands.templates import cli_test

    raise typer.Exit(cli_test(template_id, var or [], persona))


@app.command()
def classify() -> None:
    """Read raw records (JSONL) on stdin; write one JSON line per record with sender_type,
    message_type, confidence and reason."""
    from commands.classify import cli_classify

    raise typer.Exit(cli_classify())


@app.command()
def accuracy(
    dataset: Annotated[
        Path | None,
        typer.Argument(help="A labelled JSONL set (default: every set; the blind sets decide the verdict)."),
    ] = None,
    roster: Annotated[
        Path | None,
        typer.Option(help="Roster YAML (default: X_roster.yaml or labelled_roster.yaml beside the set)."),
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="List the misclassified messages.")] = False,
    rules_only: Annotated[
        bool, typer.Option("--rules-only", help="The rules alone, without the trained model.")
    ] = False,
) -> None:
    """Message and sender type accuracy, per-class recall and confusion matrices on the labelled sets;
    exit 1 when a blind set (or the given set) is below the targets."""
    from commands.accuracy import cli_accuracy

    raise typer.Exit(cli_accuracy(dataset, roster, errors, rules_only))


@app.command()
def train(
    corpus: Annotated[
        Path | None, typer.Option(help="Corpus directory (default tests/data/corpus, plus the earlier sets).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Model file to write (default: the builtin model).")
    ] = None,
) -> None:
    """Rebuild the message-type model from the labelled corpus and report its cross-validated accuracy."""
    from commands.accuracy import cli_train

    raise typer.Exit(cli_train(corpus, out))


@app.command()
def schema(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the schema files (created if missing).")
    ] = Path("schemas"),
) -> None:
    """Write the JSON Schema of every monitor event (<event>.schema.json) and of the raw record
    (raw_record.schema.json)."""
    from commands.schema import cli_schema

    raise typer.Exit(cli_schema(out))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def chaos(
    ctx: typer.Context,
    scale: Annotated[
        int, typer.Option(help="How much harder than CI: more records, rounds and longer outages.")
    ] = 10,
    select: Annotated[
        str | None, typer.Option("-k", help="Only the scenarios matching this pytest -k expression.")
    ] = None,
) -> None:
    """Run the failure-path and fuzz scenarios (broker and database outages, kill -9, spool races,
    hostile input, stalls) at a larger scale than CI; extra arguments go to pytest."""
    from commands.chaos import cli_chaos

    raise typer.Exit(cli_chaos(scale, select, list(ctx.args)))


if __name__ == "__main__":
    app()
