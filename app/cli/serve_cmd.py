"""`pipeline-guard serve`: migrate, create the first admin, serve with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import typer

from app.cli.common import ConfigOption, settings_from

# SIGTERM: requests in flight get this long, then the lifespan stops probing and writes what ran
# (leases drain <= 5 s, in-flight checks <= 2 s, then the flush), all inside the 30 s grace period the
# shipped Kubernetes manifest and docker-compose file give before SIGKILL.
HTTP_DRAIN_S = 10


def register(cli: typer.Typer) -> None:
    @cli.command("serve")
    def serve(
        config: ConfigOption = None,
        host: str = typer.Option("127.0.0.1", help="address to bind"),
        port: int = typer.Option(8080, help="port to bind"),
        migrate: bool = typer.Option(True, help="run database migrations before serving"),
        log_level: str = typer.Option(None, help="override PIPELINE_LOG_LEVEL"),
        next_steps: bool = typer.Option(False, "--next-steps", help="print what to do next (make run does)"),
    ) -> None:
        """Run the guard (the seed's --daemon)."""
        import uvicorn
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError

        from app.cli.bootstrap import ADMIN_USERNAME, ensure_first_admin, prepare_database
        from app.main import create_app
        from app.observability.logging import configure_logging
        from app.platform.heap import limit_arenas

        limit_arenas()  # before any thread starts: the SQLite driver threads share two malloc arenas
        settings = settings_from(config)
        configure_logging(log_level or settings.log_level, settings.log_format)
        try:
            if migrate:
                prepare_database(settings)
            generated = ensure_first_admin(settings)
        except (OSError, TimeoutError, DBAPIError) as exc:
            # Refuse to start without the database (the orchestrator retries); once running, an
            # outage is degraded mode (503s, /health stays 200), not a crash.
            where = make_url(settings.database_url).render_as_string(hide_password=True)
            typer.secho(
                f"cannot reach the database at {where} at startup ({type(exc).__name__}); refusing to start "
                "— start the database (or fix PIPELINE_DATABASE_URL) and start the guard again",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(1) from None
        if generated:
            typer.secho(
                f"\n  Created the first admin user.\n  username: {ADMIN_USERNAME}\n  password: {generated}\n"
                "  (shown once; set PIPELINE_ADMIN_PASSWORD to choose it)\n",
                fg=typer.colors.YELLOW,
                err=True,
            )
        if next_steps:
            typer.secho(
                next_steps_text(f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"),
                fg=typer.colors.CYAN,
                err=True,
            )
        from app.api.http_protocol import deadline_protocol

        app = create_app(settings)
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http=deadline_protocol(settings.security),
            log_config=None,
            proxy_headers=False,
            timeout_graceful_shutdown=HTTP_DRAIN_S,
        )


def next_steps_text(url: str) -> str:
    """What a new user does next, with commands that work as printed (the doc-test runs them)."""
    return f"""
  Pipeline Guard is starting on {url}. Next steps, in another terminal:
    1. log in:               pipeline-guard login --url {url} -u admin
    2. add a component:      pipeline-guard components add web --check-kind http --check-url https://example.com/health --interval 30s
       or a batch job:       pipeline-guard components add nightly-etl --check-kind heartbeat --period 1d --grace 1h
    3. the job's ping URL:   pipeline-guard components ping-url nightly-etl
       then, in the job:     curl -fsS -m 10 --retry 6 --retry-connrefused {url}/ping/<token>       (or .../fail, or .../$? for the exit code)
    4. a channel for alerts: pipeline-guard channels add ops --kind slack --webhook-url https://hooks.slack.com/services/T000/B000/XXXX
    5. open the status page: {url}/status    (the API and its docs: {url}/docs)
"""  # noqa: E501 - the commands are printed whole, to be copied
