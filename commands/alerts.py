"""`worktool alerts cancel|escalate` and `worktool console`.

The alert commands do what the console API does (console/actions.py), directly against DATABASE_URL
and KAFKA_BOOTSTRAP_SERVERS, so they work without the API running. Exit codes: 0 accepted; 1 refused
(unknown or closed alert) or a service that did not answer; 2 bad usage or missing settings.
"""

from __future__ import annotations

from worktool.models import ControlAction
from worktool.settings import Settings

MAX_ACTOR_CHARS = 128
MAX_REASON_CHARS = 2000


def _usage_error(settings: Settings, actor: str, reason: str) -> str | None:
    missing = settings.missing("database_url", "kafka_bootstrap_servers")
    if missing:
        return f"{' and '.join(missing)} not set: point them at the stack's database and broker"
    if not actor.strip() or len(actor.strip()) > MAX_ACTOR_CHARS:
        return f"--actor must be 1 to {MAX_ACTOR_CHARS} characters"
    if not reason.strip() or len(reason.strip()) > MAX_REASON_CHARS:
        return f"--reason must be 1 to {MAX_REASON_CHARS} characters"
    return None


def cli_alert_action(
    action: ControlAction, alert_id: str, *, reason: str, actor: str, settings: Settings | None = None
) -> int:
    import psycopg
    from rich.console import Console

    from console.actions import ActionError, ControlProducer, ServiceUnavailable, perform_action

    out, err = Console(highlight=False), Console(stderr=True, highlight=False)
    settings = settings or Settings()
    if problem := _usage_error(settings, actor, reason):
        err.print(f"[red]{problem}[/red]")
        return 2
    assert settings.database_url and settings.kafka_bootstrap_servers  # checked above
    producer = ControlProducer(
        settings.kafka_bootstrap_servers, settings.topic_control, timeout_s=settings.api_produce_timeout_s
    )
    try:
        alert, accepted = perform_action(
            settings.database_url, producer, alert_id, action, actor=actor.strip(), reason=reason.strip()
        )
    except ActionError as e:
        outcome = "failed" if isinstance(e, ServiceUnavailable) else "refused"
        err.print(f"[red]{outcome} ({e.status}):[/red] {e.detail}")
        return 1
    except psycopg.Error as e:
        err.print(f"[red]database error:[/red] {e}")
        return 1
    finally:
        producer.close(timeout_s=1.0)
    record = accepted.record
    where = f"session {alert.session_id}" if alert.session_id else f"robot {alert.robot_id}"
    out.print(
        f"{record.action} of alert {alert.alert_id} ({alert.alert_type}, level {alert.alert_level}, "
        f"{alert.status}, {where}) by {record.actor}: accepted"
    )
    out.print(
        f"written to {accepted.topic} (partition {accepted.partition}, offset {accepted.offset}) "
        f"as request {record.request_id}; the dataflow applies it and updates alert_history"
    )
    return 0


def cli_console(host: str | None = None, port: int | None = None) -> int:
    from rich.console import Console

    from console.server import ConsoleConfigError, serve

    overrides = {k: v for k, v in (("api_host", host), ("api_port", port)) if v is not None}
    settings = Settings().model_copy(update=overrides)
    try:
        serve(settings)
    except ConsoleConfigError as e:
        Console(stderr=True, highlight=False).print(f"[red]{e}[/red]")
        return 2
    return 0
