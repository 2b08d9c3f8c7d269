"""First-run setup shared by `serve` and `users`: migrate, then create the first admin."""

from __future__ import annotations

import asyncio

from app.auth.permissions import Role
from app.auth.service import AuthService
from app.auth.tokens import PasswordHasher, TokenCodec, generate_password
from app.config.settings import Settings
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import upgrade_sync
from app.db.session import session_scope
from app.platform.lifespan import resolve_secret_key

ADMIN_USERNAME = "admin"


async def _with_auth(settings: Settings, action):
    engine = create_engine(settings)
    try:
        codec = TokenCodec(
            resolve_secret_key(settings),
            issuer=settings.security.issuer,
            audience=settings.security.audience,
            expiry_seconds=settings.security.token_expiry,
        )
        async with session_scope(create_sessionmaker(engine)) as session:
            return await action(AuthService(session, settings, codec, PasswordHasher()))
    finally:
        await engine.dispose()


def ensure_first_admin(settings: Settings) -> str | None:
    """Create ``admin`` when there are no users. Returns the generated password, if one was made."""
    supplied = settings.admin_password.get_secret_value() if settings.admin_password else None
    password = supplied or generate_password()

    async def action(auth: AuthService) -> bool:
        return await auth.ensure_admin(ADMIN_USERNAME, password)

    created = asyncio.run(_with_auth(settings, action))
    return password if created and not supplied else None


def create_user(settings: Settings, username: str, password: str, role: Role) -> None:
    async def action(auth: AuthService) -> None:
        await auth.create_user(username, password, role)

    asyncio.run(_with_auth(settings, action))


def prepare_database(settings: Settings) -> None:
    upgrade_sync(settings.database_url)
