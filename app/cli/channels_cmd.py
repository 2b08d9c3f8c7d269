"""`pipeline-guard channels list|add|test|enable|disable|remove` (over HTTP; admin)."""

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli.http_common import Connection, fail, http_command, items_of, output, parse_labels

app = typer.Typer(
    help="Notification channels: slack, webhook, email, pagerduty, opsgenie, teams, discord "
    "(talks to a running guard).",
    no_args_is_help=True,
)

CHANNEL_COLUMNS = [
    ("id", ("id",)),
    ("name", ("name",)),
    ("kind", ("kind",)),
    ("enabled", ("enabled",)),
    ("severities", ("severities",)),
    ("matchers", ("matchers",)),
    ("source", ("source",)),
    ("config (masked)", ("config",)),
]


def _channel_id(conn: Connection, name_or_id: str) -> int:
    """Channels are addressed by id in the API; people use names."""
    if name_or_id.isdigit():
        return int(name_or_id)
    for channel in items_of(conn.call("list_channels", limit=1000)):
        if channel.get("name") == name_or_id:
            return int(channel["id"])
    fail(f"channel {name_or_id!r} not found")


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
    """List channels (secrets shown masked)."""
    output(conn, conn.call("list_channels", limit=1000), CHANNEL_COLUMNS)


@app.command("add")
@http_command
def add(
    conn: Connection,
    name: Annotated[str | None, typer.Argument(help="channel name (omit with --from-file)")] = None,
    kind: Annotated[
        str, typer.Option(help="slack, webhook, email, pagerduty, opsgenie, teams, discord")
    ] = "webhook",
    webhook_url: Annotated[
        str | None, typer.Option("--webhook-url", help="where to send (a Slack incoming webhook or any URL)")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="PIPELINE_CHANNEL_SECRET", help="webhook: HMAC signing secret (stored encrypted)"
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="config key=value; repeat (e.g. --set routing_key=… --set 'to=[\"a@x.org\"]')"
        ),
    ] = None,
    config: Annotated[str | None, typer.Option(help="the whole config as a JSON object")] = None,
    severity: Annotated[
        list[str] | None, typer.Option("--severity", help="info, warning, critical; repeat (default: all)")
    ] = None,
    matcher: Annotated[
        list[str] | None, typer.Option("--matcher", "-m", help="label=value the alert must have; repeat")
    ] = None,
    language: Annotated[
        str | None, typer.Option(help="en, de or fr (default: the guard's alerting.default_language)")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", "-f", help="YAML channel spec, as the API takes it")
    ] = None,
) -> None:
    """Add a channel (prefer the environment or a file for secrets: shell history keeps --set values)."""
    if from_file is not None:
        import yaml

        from app.security.safe_yaml import load_yaml

        try:
            spec = load_yaml(from_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {from_file}: {exc.strerror}", param_hint="--from-file"
            ) from None
        except yaml.YAMLError as exc:
            raise typer.BadParameter(
                f"{from_file} is not valid YAML: {exc}", param_hint="--from-file"
            ) from None
        if not isinstance(spec, dict):
            raise typer.BadParameter(f"{from_file}: expected a mapping", param_hint="--from-file")
    elif name and (webhook_url or set_ or config):
        body = _config(set_, config)
        if webhook_url:
            body["url"] = webhook_url
        if secret:
            body["secret"] = secret
        spec = {
            "name": name,
            "kind": kind,
            "config": body,
            "severities": list(severity or []),
            "matchers": parse_labels(matcher),
        }
        if language is not None:
            spec["language"] = language
    else:
        raise typer.BadParameter(
            "give NAME with --webhook-url, --set or --config; or --from-file", param_hint="NAME"
        )
    created = conn.call("create_channel", spec)
    if conn.json_output:
        output(conn, created)
    else:
        typer.echo(f"added channel {created.get('name')} (id {created.get('id')})")


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
    output(conn, body) if conn.json_output else typer.echo(
        f"{'enabled' if enabled else 'disabled'} {channel}"
    )


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
def remove(
    conn: Connection,
    channel: Annotated[str, typer.Argument(help="name or id")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
) -> None:
    """Delete a channel."""
    if not yes and not typer.confirm(f"remove channel {channel}?"):
        fail("aborted", 1)
    conn.call("delete_channel", _channel_id(conn, channel))
    output(conn, {"removed": channel}) if conn.json_output else typer.echo(f"removed channel {channel}")
