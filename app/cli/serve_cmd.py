"""`pipeline-guard serve`: migrate, create the first admin, serve with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import typer

from app.cli.common import ConfigOption, settings_from


def register(cli: typer.Typer) -> None:
    @cli.command("serve")
    def serve(
        config: ConfigOption = None,
        host: str = typer.Option("127.0.0.1", help="address to bind"),
        port: int = typer.Option(8080, help="port to bind"),
        migrate: bool = typer.Option(True, help="run database migrations before serving"),
        log_level: str = typer.Option(None, help="override PIPELINE_LOG_LEVEL"),
    ) -> None:
        """Run the guard (the seed's --daemon)."""
        import uvicorn
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import DBAPIError

        from app.cli.bootstrap import ADMIN_USERNAME, ensure_first_admin, prepare_database
        from app.main import create_app
        from app.observability.logging import configure_logging

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
            typer.secho(f"cannot reach the database at {where} at startup ({type(exc).__name__}); refusing to start "
                        "— start the database (or fix PIPELINE_DATABASE_URL) and start the guard again",
                        fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        if generated:
            typer.secho(
                f"\n  Created the first admin user.\n  username: {ADMIN_USERNAME}\n  password: {generated}\n"
                "  (shown once; set PIPELINE_ADMIN_PASSWORD to choose it)\n",
                fg=typer.colors.YELLOW, err=True,
            )
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_config=None,
                    proxy_headers=False, timeout_graceful_shutdown=20)
