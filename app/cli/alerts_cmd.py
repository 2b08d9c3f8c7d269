"""`pipeline-guard alerts list|ack|resolve` and `pipeline-guard silences list|add|expire` (over HTTP)."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from app.cli.http_common import Connection, http_command, output, parse_labels

alerts_app = typer.Typer(
    help="Alerts: list, acknowledge, resolve (talks to a running guard).", no_args_is_help=True
)
silences_app = typer.Typer(
    help="Silences (maintenance windows) (talks to a running guard).", no_args_is_help=True
)

ALERT_COLUMNS = [
    ("id", ("id",)),
    ("state", ("state", "status")),
    ("severity", ("severity",)),
    ("component", ("component",)),
    ("message", ("message", "summary")),
    ("since", ("started_at", "created_at", "timestamp")),
    ("count", ("count", "occurrences")),
]
SILENCE_COLUMNS = [
    ("id", ("id",)),
    ("component", ("component",)),
    ("labels", ("labels",)),
    ("starts", ("starts_at",)),
    ("ends", ("ends_at",)),
    ("by", ("created_by",)),
    ("active", ("active",)),
    ("comment", ("comment",)),
]


def _duration(value: str, option: str) -> float:
    from app.client.core import duration_seconds

    try:
        return duration_seconds(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _until(value: str | None, option: str) -> str | None:
    """An ISO time as given, or a duration (``2h``) from now."""
    if value is None:
        return None
    try:
        from app.client.core import encode_instant  # the client (httpx) is imported by the command only

        return encode_instant(datetime.fromisoformat(value))
    except ValueError:
        return (datetime.now(UTC) + timedelta(seconds=_duration(value, option))).isoformat()


@alerts_app.command("list")
@http_command
def list_alerts(
    conn: Connection,
    state: Annotated[str | None, typer.Option(help="firing, acknowledged, resolved, silenced")] = None,
    component: Annotated[str | None, typer.Option()] = None,
    severity: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List alerts (newest first)."""
    output(
        conn,
        conn.call("list_alerts", state=state, component=component, severity=severity, limit=limit),
        ALERT_COLUMNS,
    )


@alerts_app.command("ack")
@http_command
def ack(
    conn: Connection,
    alert_id: Annotated[str, typer.Argument(metavar="ID")],
    until: Annotated[
        str | None, typer.Option(help="snooze: re-open after this time or duration (e.g. 2h)")
    ] = None,
    comment: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Acknowledge an alert."""
    body = conn.call("ack_alert", alert_id, until=_until(until, "--until"), comment=comment)
    output(conn, body) if conn.json_output else typer.echo(f"acknowledged alert {alert_id}")


@alerts_app.command("resolve")
@http_command
def resolve(
    conn: Connection,
    alert_id: Annotated[str, typer.Argument(metavar="ID")],
    comment: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Resolve an alert."""
    body = conn.call("resolve_alert", alert_id, comment=comment)
    output(conn, body) if conn.json_output else typer.echo(f"resolved alert {alert_id}")


@silences_app.command("list")
@http_command
def list_silences(
    conn: Connection, all_: Annotated[bool, typer.Option("--all", help="include expired silences")] = False
) -> None:
    """List silences (active ones unless --all)."""
    output(conn, conn.call("list_silences", include_expired=all_), SILENCE_COLUMNS)


@silences_app.command("add")
@http_command
def add_silence(
    conn: Connection,
    component: Annotated[str | None, typer.Option(help="silence this component")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
    duration: Annotated[str, typer.Option(help="how long, e.g. 30m, 2h")] = "1h",
    comment: Annotated[str, typer.Option(help="why (shown to others)")] = "",
) -> None:
    """Mute notifications and healing for matching components for a while."""
    labels = parse_labels(label)
    if not component and not labels:
        raise typer.BadParameter("give --component and/or --label", param_hint="--component")
    start = datetime.now(UTC)
    spec = {
        "component": component,
        "labels": labels,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(seconds=_duration(duration, "--duration"))).isoformat(),
        "comment": comment,
    }
    body = conn.call("create_silence", spec)
    output(conn, body) if conn.json_output else typer.echo(
        f"silence {body.get('id', '?')} until {spec['ends_at']}"
    )


@silences_app.command("expire")
@http_command
def expire(conn: Connection, silence_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """End a silence now."""
    conn.call("expire_silence", silence_id)
    output(conn, {"expired": silence_id}) if conn.json_output else typer.echo(f"expired silence {silence_id}")
