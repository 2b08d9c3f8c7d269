"""What every HTTP command shares: where the guard is, the stored login, output, errors.

Every HTTP command gets ``--url`` (env PIPELINE_URL, else the stored login's URL, else
http://127.0.0.1:8080), ``--token`` (env PIPELINE_TOKEN, else the stored login's token — only sent
to the URL it was issued by) and ``--json``. Errors print one line, ``error: <message>``, and exit
with 1 (2 for a request the guard rejected as invalid); never a traceback.

(No ``from __future__ import annotations`` here: typer reads the injected options' annotations.)
"""

import functools
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.exceptions import TyperException

if TYPE_CHECKING:
    from app.client import GuardClient

DEFAULT_URL = "http://127.0.0.1:8080"
CREDENTIALS_FILE = "credentials.json"


class _Console:
    """A rich console made when it prints, not at import: it reads the terminal (its width, ``COLUMNS``,
    the streams) as they are when the command runs."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr

    def now(self) -> Console:
        """The console of this moment (for what keeps one, e.g. a progress display)."""
        return Console(stderr=self._stderr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.now(), name)


console = _Console()
err_console = _Console(stderr=True)


# --- the stored login -------------------------------------------------------------------------


def config_dir() -> Path:
    override = os.environ.get("PIPELINE_CLI_CONFIG_DIR")
    return Path(override) if override else Path(typer.get_app_dir("pipeline-guard"))


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> dict[str, Any]:
    try:
        data = json.loads(credentials_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_credentials(url: str, token: str, username: str | None) -> Path:
    """Write the login with 0600 permissions (the directory 0700), never readable by others."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url, "token": token, "username": username}, handle)
    os.chmod(path, 0o600)
    return path


def forget_credentials() -> bool:
    try:
        credentials_path().unlink()
        return True
    except FileNotFoundError:
        return False


# --- the connection ---------------------------------------------------------------------------


@dataclass
class Connection:
    url: str
    token: str | None
    json_output: bool

    def client(self, *, username: str | None = None, password: str | None = None) -> "GuardClient":
        """A client that fails fast and raises (the CLI says why in one line); close it when done
        (``with conn.client() as client:``). With ``username``/``password`` it logs in instead of
        using the token."""
        from app.client import GuardClient

        quiet_client_log()
        # A pipeline client would keep retrying quietly; the CLI fails fast and says why.
        return GuardClient(
            self.url,
            None if username else self.token,
            username=username,
            password=password,
            raise_errors=True,
            retries=1,
            backoff=0.2,
            timeout=15.0,
            flush_interval=0,
        )

    def call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        with self.client() as client:
            return getattr(client, operation)(*args, **kwargs)


def quiet_client_log() -> None:
    """The CLI reports failures itself, as one line; keep the client's log warnings out of stderr."""
    client_log = logging.getLogger("pipeline_guard.client")
    if not client_log.handlers:
        client_log.addHandler(logging.NullHandler())
        client_log.propagate = False


def resolve_connection(url: str | None, token: str | None, json_output: bool) -> Connection:
    stored = load_credentials()
    resolved_url = (url or stored.get("url") or DEFAULT_URL).rstrip("/")
    if token is None and stored.get("token") and str(stored.get("url", "")).rstrip("/") == resolved_url:
        token = stored["token"]  # a stored token only goes back to the guard that issued it
    return Connection(url=resolved_url, token=token, json_output=json_output)


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="PIPELINE_URL",
        show_default=False,
        help=f"guard URL (else the stored login's, else {DEFAULT_URL})",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="PIPELINE_TOKEN", show_default=False, help="bearer token (else the stored login's)"
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def http_command(func: Callable) -> Callable:
    """Give a command ``--url``, ``--token`` and ``--json``; pass it a Connection; turn errors into one
    line."""
    signature = inspect.signature(func)
    params = [p for name, p in signature.parameters.items() if name != "conn"]
    extra = [
        inspect.Parameter("url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=UrlOption),
        inspect.Parameter("token", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=TokenOption),
        inspect.Parameter(
            "json_output", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption
        ),
    ]

    @functools.wraps(func)
    def wrapper(
        *args: Any, url: str | None = None, token: str | None = None, json_output: bool = False, **kwargs: Any
    ):
        conn = resolve_connection(url, token, json_output)
        with handle_errors(conn):
            return func(conn, *args, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in func.__annotations__.items() if k != "conn"},
        "url": UrlOption,
        "token": TokenOption,
        "json_output": JsonOption,
    }
    return wrapper


class handle_errors:
    def __init__(self, conn: Connection):
        self.conn = conn

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None or isinstance(
            exc,
            (click.ClickException, TyperException, typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt),
        ):
            return
        from app.client import GuardAPIError, GuardConnectionError

        if isinstance(exc, GuardAPIError):
            message = exc.message
            described = describe_details(exc.details)
            if described:
                message += ": " + "; ".join(described)
            if exc.status == 401:
                message += f" (log in with `pipeline-guard login --url {self.conn.url}`)"
            fail(message, 2 if exc.status in (400, 422) else 1)
        if isinstance(exc, GuardConnectionError):
            fail(f"cannot reach the guard at {self.conn.url} ({str(exc).rsplit(': ', 1)[-1]})")
        if isinstance(exc, (ValueError, OSError)):
            fail(str(exc), 2 if isinstance(exc, ValueError) else 1)
        fail(f"{type(exc).__name__}: {exc}")


def describe_details(details: Any) -> list[str]:
    """Every detail of an error envelope as a line: the fields, problems and per-item errors the API
    names, then any other key (a CLI error must say what the API said, not only its headline)."""
    if not isinstance(details, dict):
        return [str(details)] if details else []
    lines: list[str] = []
    for key, value in details.items():
        if key in ("fields", "errors") and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    where = (
                        item.get("field")
                        if item.get("index") is None
                        else f"[{item['index']}].{item.get('field')}"
                    )
                    lines.append(f"{where}: {item.get('message')}")
                else:
                    lines.append(str(item))
        elif key == "problems" and isinstance(value, list):
            lines.extend(str(item) for item in value)
        elif key not in ("request_id",):
            lines.append(f"{key}: {cell(value)}")
    return lines


# --- parsing and output -----------------------------------------------------------------------


def parse_labels(values: Sequence[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--label")
        labels[key.strip()] = value.strip()
    return labels


def items_of(body: Any) -> list[Any]:
    """The list inside a page (``{"items": [...]}``) or a bare list."""
    if isinstance(body, dict):
        for key in ("items", "data", "results"):
            if isinstance(body.get(key), list):
                return body[key]
        return [body]
    return list(body or [])


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value) or "-"
    return str(value)


def pick(row: dict[str, Any], *keys: str) -> Any:
    """The first present key; ``a.b`` looks into nested dicts. Missing fields are tolerated."""
    for key in keys:
        node: Any = row
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


STATUS_STYLES = {
    "healthy": "green",
    "degraded": "yellow",
    "critical": "red",
    "failed": "bold red",
    "recovering": "cyan",
    "firing": "red",
    "acknowledged": "yellow",
    "resolved": "green",
    "unknown": "dim",
}


def styled(value: Any) -> str:
    text = cell(value)
    style = STATUS_STYLES.get(text.lower()) if isinstance(value, str) else None
    return f"[{style}]{text}[/{style}]" if style else text.replace("[", r"\[")


def output(
    conn: Connection,
    body: Any,
    columns: Iterable[tuple[str, tuple[str, ...]]] | None = None,
    title: str | None = None,
) -> None:
    """``--json``: the body as JSON; else a table of ``columns`` (header, keys to try) over the items."""
    if conn.json_output:
        sys.stdout.write(json.dumps(body, indent=2, default=str) + "\n")
        return
    rows = items_of(body)
    if columns is None:
        table = Table(show_header=False, title=title)
        for key, value in (body or {}).items() if isinstance(body, dict) else []:
            table.add_row(str(key), styled(value) if not isinstance(value, (dict, list)) else cell(value))
        console.print(table)
        return
    columns = list(columns)
    table = Table(title=title)
    for header, _ in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(
            *(styled(pick(row, *keys)) if isinstance(row, dict) else cell(row) for _, keys in columns)
        )
    console.print(table)
    if not rows:
        err_console.print("(none)")
