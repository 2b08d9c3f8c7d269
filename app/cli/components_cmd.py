"""`pipeline-guard components list|show|add|ping-url|remove|enable|disable` (over HTTP)."""

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from app.cli.http_common import Connection, err_console, fail, http_command, output, parse_labels

app = typer.Typer(help="The components the guard watches (talks to a running guard).", no_args_is_help=True)

LIST_COLUMNS = [
    ("name", ("name",)),
    ("status", ("state.status", "status")),
    ("critical", ("critical",)),
    ("check", ("check.kind",)),
    ("region", ("region", "labels.region")),
    ("enabled", ("enabled",)),
    ("labels", ("labels",)),
]


@app.command("list")
@http_command
def list_(
    conn: Connection,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="key=value; repeat (all must match)")
    ] = None,
    region: Annotated[str | None, typer.Option()] = None,
    status: Annotated[
        str | None, typer.Option(help="healthy, degraded, critical, recovering, failed, unknown")
    ] = None,
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


def _param_value(text: str) -> Any:
    """``--param`` values are YAML scalars/lists (``3``, ``true``, ``[200, 204]``), else the text itself."""
    import yaml

    from app.security.safe_yaml import load_yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def _spec_from_options(
    name: str,
    check_kind: str | None,
    check: dict[str, Any],
    labels: dict[str, str],
    critical: bool,
    description: str,
    endpoint: str | None,
    recovery_file: Path | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "critical": critical, "labels": labels}
    if description:
        spec["description"] = description
    if endpoint or check.get("url"):
        spec["endpoint"] = endpoint or check["url"]
    if check_kind:
        spec["check"] = {"kind": check_kind, **check}
    elif check:
        raise typer.BadParameter(
            f"{', '.join('--' + k.replace('_', '-') for k in check)} describe a check: give --check-kind too",
            param_hint="--check-kind",
        )
    if recovery_file is not None:
        recovery = _load_yaml(recovery_file, "--recovery-file")
        if not isinstance(recovery, dict):
            raise typer.BadParameter(
                f"{recovery_file}: expected a recovery policy mapping", param_hint="--recovery-file"
            )
        spec["recovery"] = recovery
    return spec


def _load_yaml(path: Path, option: str) -> Any:
    import yaml  # only when a file is given: --help and the other commands do without it

    from app.security.safe_yaml import load_yaml

    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=option) from None
    except yaml.YAMLError as exc:
        raise typer.BadParameter(f"{path} is not valid YAML: {exc}", param_hint=option) from None


def _specs_from_file(path: Path) -> list[dict[str, Any]]:
    data = _load_yaml(path, "--from-file")
    if isinstance(data, dict) and isinstance(data.get("components"), list):
        data = data["components"]
    specs = data if isinstance(data, list) else [data]
    if not specs or not all(isinstance(s, dict) and s.get("name") for s in specs):
        raise typer.BadParameter(
            f"{path}: expected a component mapping with a name, or a list of them", param_hint="--from-file"
        )
    return specs


@app.command("add")
@http_command
def add(
    conn: Connection,
    name: Annotated[str | None, typer.Argument(help="component name (omit with --from-file)")] = None,
    check_kind: Annotated[
        str | None, typer.Option("--check-kind", help="http, tcp, command, heartbeat or a plugin")
    ] = None,
    check_url: Annotated[
        str | None, typer.Option("--check-url", "--target", help="what an http check probes")
    ] = None,
    interval: Annotated[str | None, typer.Option(help="check interval, e.g. 30s")] = None,
    timeout: Annotated[str | None, typer.Option(help="check timeout, e.g. 5s")] = None,
    host: Annotated[str | None, typer.Option(help="tcp: the host to connect to")] = None,
    port: Annotated[int | None, typer.Option(help="tcp: the port to connect to")] = None,
    period: Annotated[str | None, typer.Option(help="heartbeat: how often the job runs, e.g. 1h")] = None,
    grace: Annotated[str | None, typer.Option(help="heartbeat: lateness tolerated, e.g. 5m")] = None,
    max_runtime: Annotated[
        str | None, typer.Option(help="heartbeat: a run longer than this is a failure")
    ] = None,
    failure_threshold: Annotated[int | None, typer.Option(help="failures in a row before unhealthy")] = None,
    success_threshold: Annotated[
        int | None, typer.Option(help="successes in a row before healthy again")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="any other check setting, key=value (YAML value); repeat"),
    ] = None,
    recovery_file: Annotated[
        Path | None, typer.Option("--recovery-file", help="YAML recovery policy (strategies, attempts, ...)")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value; repeat")] = None,
    critical: Annotated[
        bool, typer.Option("--critical", help="its failure makes the whole system critical")
    ] = False,
    description: Annotated[str, typer.Option()] = "",
    endpoint: Annotated[str | None, typer.Option(help="the component's address (informational)")] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", "-f", help="YAML spec (one component or a list)")
    ] = None,
) -> None:
    """Register a component (from options, or every component of a YAML file)."""
    if from_file is not None:
        specs = _specs_from_file(from_file)
    elif name:
        named = {
            "url": check_url,
            "interval": interval,
            "timeout": timeout,
            "host": host,
            "port": port,
            "period": period,
            "grace": grace,
            "max_runtime": max_runtime,
            "failure_threshold": failure_threshold,
            "success_threshold": success_threshold,
        }
        check = {k: v for k, v in named.items() if v is not None}
        check.update({k: _param_value(v) for k, v in parse_labels(param).items()})
        specs = [
            _spec_from_options(
                name, check_kind, check, parse_labels(label), critical, description, endpoint, recovery_file
            )
        ]
    else:
        raise typer.BadParameter("give a NAME or --from-file", param_hint="NAME")
    created = []
    if len(specs) == 1:
        created.append(conn.call("create_component", specs[0]))
    else:
        with Progress(console=err_console.now(), transient=True) as progress:
            task = progress.add_task("adding components", total=len(specs))
            for spec in specs:
                created.append(conn.call("create_component", spec))
                progress.advance(task)
    if conn.json_output:
        output(conn, created if len(created) > 1 else created[0])
    else:
        for item in created:
            typer.echo(f"added {item.get('name')}")


@app.command("ping-url")
@http_command
def ping_url(conn: Connection, name: str) -> None:
    """Make a new ping URL for a heartbeat component (the previous one stops working) and show how to use
    it."""
    token = conn.call("request", "POST", f"/api/v1/components/{name}/ping-token")["token"]
    url = f"{conn.url}/ping/{token}"
    if conn.json_output:
        output(conn, {"component": name, "url": url, "start": f"{url}/start", "fail": f"{url}/fail"})
        return
    typer.echo(url)
    err_console.print(
        f"  shown once. In the job: curl -fsS -m 10 --retry 6 --retry-connrefused {url}   "
        f"(start: {url}/start, "
        f"failure: {url}/fail, exit code: {url}/$?; a POST body is kept as the run's log; "
        f"?rid=<uuid> on each ping names the run)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@app.command("remove")
@http_command
def remove(
    conn: Connection, name: str, yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False
) -> None:
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
