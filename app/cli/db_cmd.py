"""`pipeline-guard db`: schema migrations."""

from __future__ import annotations

import typer

from app.cli.common import ConfigOption, settings_from

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    config: ConfigOption = None, revision: str = typer.Option("head", help="target revision")
) -> None:
    """Migrate the database to the latest schema (safe to run repeatedly)."""
    from app.db.migrate import head_revision, upgrade_sync

    settings = settings_from(config)
    upgrade_sync(settings.database_url, revision)
    typer.echo(f"database at {revision} ({head_revision()})")


@app.command("head")
def head() -> None:
    """Print the schema revision this version of the guard needs."""
    from app.db.migrate import head_revision

    typer.echo(head_revision())
