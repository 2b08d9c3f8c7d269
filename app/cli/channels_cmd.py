"""`pipeline-guard channels list|add|test|remove` (over HTTP; admin)."""

import json
from typing import Annotated

import typer

from app.cli.http_common import Connection, http_command, output, parse_labels

app = typer.Typer(help="Notification channels: slack, webhook, email, pagerduty, opsgenie, teams, discord "
                       "(talks to a running guard).", no_args_is_help=True)

COLUMNS = [
    ("id", ("id",)), ("name", ("name",)), ("kind", ("kind",)), ("enabled", ("enabled",)),
    ("severities", ("severities",)), ("source", ("source",)), ("config (masked)", ("config",)),
]


def _config(pairs: list[str] | None, raw: str | None) -> dict:
    """``--set key=value`` (repeat; a value that parses as JSON is taken as JSON: lists, numbers) or
    ``--config '{...}'``."""
    config: dict = {}
    if raw:
        try:
            config = json.loads(raw)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
        if not isinstance(config, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="--config")
    for key, value in parse_labels(pairs).items():
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value
    return config


@app.command("list")
@http_command
def list_channels(conn: Connection) -> None:
    """List channels (secrets masked)."""
    output(conn, conn.call("request", "GET", "/api/v1/channels"), COLUMNS)


@app.command("add")
@http_command
def add_channel(
    conn: Connection,
    name: Annotated[str, typer.Argument()],
    kind: Annotated[str, typer.Option(help="slack, webhook, email, pagerduty, opsgenie, teams, discord")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="config key=value; repeat (e.g. "
                                                                 "--set routing_key=… --set 'to=[\"a@x.org\"]')")] = None,
    config: Annotated[str | None, typer.Option(help="the whole config as a JSON object")] = None,
    severity: Annotated[list[str] | None, typer.Option(help="only these severities; repeat")] = None,
    language: Annotated[str, typer.Option(help="en, de, fr")] = "en",
) -> None:
    """Add a channel (prefer the environment or a file for secrets: shell history keeps --set values)."""
    body = {"name": name, "kind": kind, "config": _config(set_, config), "language": language,
            "severities": severity or []}
    created = conn.call("request", "POST", "/api/v1/channels", json=body)
    output(conn, created) if conn.json_output else typer.echo(f"channel {created.get('id')} ({name}, {kind}) added")


@app.command("test")
@http_command
def test_channel(conn: Connection, channel_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Send a test notification now."""
    result = conn.call("request", "POST", f"/api/v1/channels/{channel_id}/test")
    if conn.json_output:
        output(conn, result)
    elif result.get("delivered"):
        typer.echo(f"delivered ({result.get('status_code')}, {result.get('latency_ms')} ms)")
    else:
        typer.echo(f"not delivered: {result.get('error')}", err=True)
        raise typer.Exit(1)


@app.command("remove")
@http_command
def remove_channel(conn: Connection, channel_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Delete a channel."""
    conn.call("request", "DELETE", f"/api/v1/channels/{channel_id}")
    output(conn, {"removed": channel_id}) if conn.json_output else typer.echo(f"removed channel {channel_id}")
