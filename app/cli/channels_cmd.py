"""`pipeline-guard channels list|add|test|enable|disable|remove` (over HTTP; admin)."""

from pathlib import Path
from typing import Annotated

import typer

from app.cli.http_common import Connection, fail, http_command, items_of, output, parse_labels

app = typer.Typer(help="Notification channels: where alerts are sent (talks to a running guard).", no_args_is_help=True)

CHANNEL_COLUMNS = [
    ("id", ("id",)), ("name", ("name",)), ("kind", ("kind",)), ("enabled", ("enabled",)),
    ("severities", ("severities",)), ("matchers", ("matchers",)), ("config", ("config",)),
]


def _channel_id(conn: Connection, name_or_id: str) -> int:
    """Channels are addressed by id in the API; people use names."""
    if name_or_id.isdigit():
        return int(name_or_id)
    for channel in items_of(conn.call("list_channels", limit=1000)):
        if channel.get("name") == name_or_id:
            return int(channel["id"])
    fail(f"channel {name_or_id!r} not found")
    raise AssertionError  # fail() exits


@app.command("list")
@http_command
def list_channels(conn: Connection) -> None:
    """List channels (secrets shown masked)."""
    output(conn, conn.call("list_channels", limit=1000), CHANNEL_COLUMNS)


@app.command("add")
@http_command
def add(
    conn: Connection,
    name: Annotated[str | None, typer.Argument(help="channel name (omit with --from-file)")] = None,
    kind: Annotated[str, typer.Option(help="slack or webhook")] = "webhook",
    webhook_url: Annotated[str | None, typer.Option("--webhook-url", help="where to send (a Slack incoming "
                                                                          "webhook or any URL)")] = None,
    secret: Annotated[str | None, typer.Option(envvar="PIPELINE_CHANNEL_SECRET",
                                               help="webhook: HMAC signing secret (stored encrypted)")] = None,
    severity: Annotated[list[str] | None, typer.Option("--severity", help="info, warning, critical; repeat "
                                                                          "(default: all)")] = None,
    matcher: Annotated[list[str] | None, typer.Option("--matcher", "-m", help="label=value the alert must have; repeat")] = None,
    language: Annotated[str, typer.Option(help="en, de or fr")] = "en",
    from_file: Annotated[Path | None, typer.Option("--from-file", "-f", help="YAML channel spec, as the API takes it")] = None,
) -> None:
    """Add a channel."""
    if from_file is not None:
        import yaml

        spec = yaml.safe_load(from_file.read_text(encoding="utf-8"))
        if not isinstance(spec, dict):
            raise typer.BadParameter(f"{from_file}: expected a mapping", param_hint="--from-file")
    elif name and webhook_url:
        config = {"url": webhook_url, **({"secret": secret} if secret else {})}
        spec = {"name": name, "kind": kind, "config": config, "language": language,
                "severities": list(severity or []), "matchers": parse_labels(matcher)}
    else:
        raise typer.BadParameter("give NAME and --webhook-url, or --from-file", param_hint="NAME")
    body = conn.call("create_channel", spec)
    output(conn, body) if conn.json_output else typer.echo(f"added channel {body.get('name')} (id {body.get('id')})")


@app.command("test")
@http_command
def test(conn: Connection, channel: Annotated[str, typer.Argument(help="name or id")]) -> None:
    """Send a test message now and say whether it was delivered (exit 1 when not)."""
    body = conn.call("test_channel", _channel_id(conn, channel))
    if conn.json_output:
        output(conn, body)
    elif body.get("delivered"):
        typer.echo(f"delivered (HTTP {body.get('status_code')}, {body.get('latency_ms') or 0:.0f} ms)")
    if not body.get("delivered"):
        fail(f"not delivered: {body.get('error') or body.get('status_code')}")


def _toggle(conn: Connection, channel: str, enabled: bool) -> None:
    body = conn.call("update_channel", _channel_id(conn, channel), {"enabled": enabled})
    output(conn, body) if conn.json_output else typer.echo(f"{'enabled' if enabled else 'disabled'} {channel}")


@app.command("enable")
@http_command
def enable(conn: Connection, channel: Annotated[str, typer.Argument(help="name or id")]) -> None:
    """Send to this channel again."""
    _toggle(conn, channel, True)


@app.command("disable")
@http_command
def disable(conn: Connection, channel: Annotated[str, typer.Argument(help="name or id")]) -> None:
    """Stop sending to this channel (it stays configured)."""
    _toggle(conn, channel, False)


@app.command("remove")
@http_command
def remove(conn: Connection, channel: Annotated[str, typer.Argument(help="name or id")],
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Delete a channel."""
    if not yes and not typer.confirm(f"remove channel {channel}?"):
        fail("aborted", 1)
    conn.call("delete_channel", _channel_id(conn, channel))
    output(conn, {"removed": channel}) if conn.json_output else typer.echo(f"removed channel {channel}")
