"""Data access for users and revoked tokens. Only flushes; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, delete, exists, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.models import RevokedToken, User


class UserRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def by_username(self, username: str) -> User | None:
        return (
            await self.session.execute(select(User).where(User.username == username))
        ).scalar_one_or_none()

    async def same_name_any_case(self, username: str) -> str | None:
        """The existing username equal to ``username`` ignoring case, if any."""
        query = select(User.username).where(func.lower(User.username) == username.lower()).limit(1)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def caller(self, username: str, jti: str) -> Row[int, str, str, bool, int, bool] | None:
        """What authenticating a token needs, in one statement: the user's ``id``, ``username``,
        ``role``, ``disabled`` and ``token_version``, and ``revoked`` (the token's id is revoked).
        None when there is no such user."""
        revoked = exists().where(RevokedToken.jti == jti).label("revoked")
        query = select(User.id, User.username, User.role, User.disabled, User.token_version, revoked).where(
            User.username == username
        )
        return (await self.session.execute(query)).one_or_none()

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(User))).scalar_one())

    async def list(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        total = await self.count()
        rows = (
            await self.session.execute(select(User).order_by(User.id).limit(limit).offset(offset))
        ).scalars()
        return list(rows), total

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user


class RevocationRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def is_revoked(self, jti: str) -> bool:
        return (await self.session.get(RevokedToken, jti)) is not None

    async def revoke(self, jti: str, username: str, expires_at: datetime) -> None:
        if await self.session.get(RevokedToken, jti) is None:
            self.session.add(RevokedToken(jti=jti, username=username, expires_at=expires_at))
            await self.session.flush()

    async def purge_expired(self, now: datetime) -> int:
        result = await self.session.execute(delete(RevokedToken).where(RevokedToken.expires_at < now))
        return cast("CursorResult[Any]", result).rowcount or 0  # a DELETE's result is a CursorResult

    async def count(self) -> int:
        return int((await self.session.execute(select(func.count()).select_from(RevokedToken))).scalar_one())
