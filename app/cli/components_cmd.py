"""`pipeline-guard components list|show|add|remove|enable|disable` (over HTTP)."""

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import Progress

from app.cli.http_common import Connection, err_console, fail, http_command, output, parse_labels

app = typer.Typer(help="The components the guard watches (talks to a running guard).", no_args_is_help=True)

LIST_COLUMNS = [
    ("name", ("name",)), ("status", ("state.status", "status")), ("critical", ("critical",)),
    ("check", ("check.kind",)), ("region", ("region", "labels.region")), ("enabled", ("enabled",)),
    ("labels", ("labels",)),
]


@app.command("list")
@http_command
def list_(
    conn: Connection,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat (all must match)")] = None,
    region: Annotated[str | None, typer.Option()] = None,
    status: Annotated[str | None, typer.Option(help="healthy, degraded, critical, recovering, failed, unknown")] = None,
) -> None:
    """List components."""
    body = conn.call("list_components", labels=parse_labels(label), region=region, status=status)
    output(conn, body, LIST_COLUMNS)


@app.command("show")
@http_command
def show(conn: Connection, name: str) -> None:
    """Show one component."""
    body = conn.call("get_component", name)
    if conn.json_output:
        output(conn, body)
        return
    flat = {k: v for k, v in body.items() if k != "state"}
    flat.update({f"state.{k}": v for k, v in (body.get("state") or {}).items()})
    output(conn, flat)


def _spec_from_options(name: str, check_kind: str | None, url: str | None, interval: str | None,
                       timeout: str | None, labels: dict[str, str], critical: bool, description: str,
                       endpoint: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "critical": critical, "labels": labels}
    if description:
        spec["description"] = description
    if endpoint or url:
        spec["endpoint"] = endpoint or url
    if check_kind:
        check: dict[str, Any] = {"kind": check_kind}
        if url:
            check["url"] = url
        if interval:
            check["interval"] = interval
        if timeout:
            check["timeout"] = timeout
        spec["check"] = check
    elif url or interval or timeout:
        raise typer.BadParameter("--url/--interval/--timeout describe a check: give --check-kind too",
                                 param_hint="--check-kind")
    return spec


def _specs_from_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--from-file") from None
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not valid YAML: {exc}", param_hint="--from-file") from None
    if isinstance(data, dict) and isinstance(data.get("components"), list):
        data = data["components"]
    specs = data if isinstance(data, list) else [data]
    if not specs or not all(isinstance(s, dict) and s.get("name") for s in specs):
        raise typer.BadParameter(f"{path}: expected a component mapping with a name, or a list of them",
                                 param_hint="--from-file")
    return specs


@app.command("add")
@http_command
def add(
    conn: Connection,
    name: Annotated[str | None, typer.Argument(help="component name (omit with --from-file)")] = None,
    check_kind: Annotated[str | None, typer.Option("--check-kind", help="http, tcp, command, heartbeat or a plugin")] = None,
    check_url: Annotated[str | None, typer.Option("--check-url", "--target", help="what an http check probes")] = None,
    interval: Annotated[str | None, typer.Option(help="check interval, e.g. 30s")] = None,
    timeout: Annotated[str | None, typer.Option(help="check timeout, e.g. 5s")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
    critical: Annotated[bool, typer.Option("--critical", help="its failure makes the whole system critical")] = False,
    description: Annotated[str, typer.Option()] = "",
    endpoint: Annotated[str | None, typer.Option(help="the component's address (informational)")] = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", "-f", help="YAML spec (one component or a list)")] = None,
) -> None:
    """Register a component (from options, or every component of a YAML file)."""
    if from_file is not None:
        specs = _specs_from_file(from_file)
    elif name:
        specs = [_spec_from_options(name, check_kind, check_url, interval, timeout, parse_labels(label), critical,
                                    description, endpoint)]
    else:
        raise typer.BadParameter("give a NAME or --from-file", param_hint="NAME")
    created = []
    if len(specs) == 1:
        created.append(conn.call("create_component", specs[0]))
    else:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("adding components", total=len(specs))
            for spec in specs:
                created.append(conn.call("create_component", spec))
                progress.advance(task)
    if conn.json_output:
        output(conn, created if len(created) > 1 else created[0])
    else:
        for item in created:
            typer.echo(f"added {item.get('name')}")


@app.command("remove")
@http_command
def remove(conn: Connection, name: str,
           yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False) -> None:
    """Delete a component and its history."""
    if not yes and not typer.confirm(f"remove {name} and its history?"):
        fail("aborted", 1)
    conn.call("delete_component", name)
    if conn.json_output:
        output(conn, {"removed": name})
    else:
        typer.echo(f"removed {name}")


def _toggle(conn: Connection, name: str, enabled: bool) -> None:
    body = conn.call("enable_component" if enabled else "disable_component", name)
    if conn.json_output:
        output(conn, body)
    else:
        typer.echo(f"{'enabled' if enabled else 'disabled'} {name}")


@app.command("enable")
@http_command
def enable(conn: Connection, name: str) -> None:
    """Resume watching a component."""
    _toggle(conn, name, True)


@app.command("disable")
@http_command
def disable(conn: Connection, name: str) -> None:
    """Stop watching a component (it stays registered)."""
    _toggle(conn, name, False)
