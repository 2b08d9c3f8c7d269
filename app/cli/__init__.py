"""The `pipeline-guard` command line (also `python -m app`).

Local commands (serve, db, config, secrets, users create) work on this machine's configuration; the others
talk to a running guard over HTTP. Command modules import the server (FastAPI, SQLAlchemy, settings)
only inside the local commands' functions, so ``--help`` and every HTTP command pay for httpx only.
"""

from __future__ import annotations

import sys

import typer


def build_app() -> typer.Typer:
    from app.cli import (
        alerts_cmd,
        channels_cmd,
        components_cmd,
        config_cmd,
        db_cmd,
        http_cmds,
        metrics_cmd,
        metrics_http,
        secrets_cmd,
        serve_cmd,
        users_cmd,
        users_http,
    )

    cli = typer.Typer(
        name="pipeline-guard",
        help="Pipeline Guard: a self-healing guard for ML and data pipelines.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    serve_cmd.register(cli)
    cli.add_typer(db_cmd.app, name="db")
    cli.add_typer(config_cmd.app, name="config")
    cli.add_typer(secrets_cmd.app, name="secrets")
    users_http.register(users_cmd.app)
    cli.add_typer(users_cmd.app, name="users")
    # Over HTTP, to a running guard.
    http_cmds.register(cli)
    cli.add_typer(components_cmd.app, name="components")
    cli.add_typer(alerts_cmd.alerts_app, name="alerts")
    cli.add_typer(alerts_cmd.silences_app, name="silences")
    from app.cli import maintenance_cmd

    cli.add_typer(maintenance_cmd.app, name="maintenance")
    cli.add_typer(channels_cmd.app, name="channels")
    # `metrics detect` runs locally; the other metrics commands talk to a running guard.
    metrics_http.app.command("detect")(metrics_cmd.detect)
    cli.add_typer(metrics_http.app, name="metrics")
    return cli


def main() -> None:
    if sys.argv[1:3] == ["metrics", "detect"]:
        # Scoring files is local and light: skip building the whole CLI (its server imports
        # cost seconds, paid per invocation).
        from app.cli.metrics_cmd import detect_app

        detect_app()(args=sys.argv[3:], prog_name="pipeline-guard metrics detect")
        return
    try:
        build_app()(standalone_mode=True)
    except Exception as exc:
        from app.core.errors import (
            PipelineGuardError,
        )  # only a local command can raise it: it is imported by then

        if not isinstance(exc, PipelineGuardError):
            raise
        problems = exc.details.get("problems") if exc.details else None
        typer.echo(f"error: {exc.message}", err=True)
        for problem in problems or []:
            typer.echo(f"  {problem}", err=True)
        sys.exit(2)
