"""`pipeline-guard secrets`: stored secrets (works on the database directly, beside running guards)."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import ConfigOption, settings_from

app = typer.Typer(help="Stored secrets (encryption key rotation).", no_args_is_help=True)


@app.command("rotate")
def rotate(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only count the secrets still encrypted with an older key")
    ] = False,
) -> None:
    """Re-encrypt every stored secret with the newest key of PIPELINE_ENCRYPTION_KEY.

    Rotate a key in three steps: run every guard with PIPELINE_ENCRYPTION_KEY=new,old; run this
    command once; then run the guards with the new key alone. All or nothing: a secret that no
    configured key opens stops it with the row's name, and nothing is changed.
    """
    import asyncio

    from app.db.engine import create_engine, create_sessionmaker
    from app.db.session import session_scope
    from app.platform.lifespan import check_schema
    from app.security.crypto import SecretBox
    from app.security.key_rotation import rotate_stored_secrets

    settings = settings_from(config)
    box = SecretBox.from_settings(settings)

    async def run():
        engine = create_engine(settings)
        try:
            await check_schema(engine)
            async with session_scope(create_sessionmaker(engine)) as session:
                report = await rotate_stored_secrets(session, box, dry_run=dry_run)
                if dry_run:
                    await session.rollback()
                return report
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    current = report.secrets - report.on_older_key
    if dry_run:
        typer.echo(
            f"{report.secrets} stored secrets: {report.on_older_key} on an older key, {current} on the newest"
        )
    else:
        typer.echo(
            f"{report.secrets} stored secrets: {report.on_older_key} re-encrypted with the newest key, "
            f"{current} already on it"
        )
