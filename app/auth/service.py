"""Login with throttling, token revocation, and user management."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.callers import CallerCache
from app.auth.permissions import Role, permissions_for
from app.auth.repository import RevocationRepository, UserRepository
from app.auth.throttle import LoginThrottle
from app.auth.tokens import PasswordHasher, TokenClaims, TokenCodec
from app.config.settings import Settings
from app.core.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from app.db.models import User

log = logging.getLogger("pipeline_guard.auth")

# The same words for unknown user, wrong password and locked account: nothing to enumerate.
BAD_CREDENTIALS = "incorrect username or password"
MAX_LOCKOUT = timedelta(hours=1)


class LoginFailed(Unauthorized):
    """A failed login. The failure counter it recorded must survive the request's rollback."""

    keeps_transaction = True

    def __init__(self) -> None:
        super().__init__(BAD_CREDENTIALS)


@dataclass(frozen=True)
class Principal:
    """Who is calling: loaded from the database (or, for at most ``callers.TTL_S``, remembered)."""

    username: str
    role: Role
    token: TokenClaims | None = None
    user_id: int | None = None

    @property
    def permissions(self) -> frozenset:
        return permissions_for(self.role)


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        codec: TokenCodec,
        hasher: PasswordHasher,
        callers: CallerCache | None = None,
    ):
        self.users = UserRepository(session)
        self.revocations = RevocationRepository(session)
        self.settings = settings
        self.codec = codec
        self.hasher = hasher
        self.callers = callers

    def _changes_users(self) -> None:
        """This transaction changes a user or revokes a token: the remembered callers go."""
        if self.callers is not None:
            self.callers.forget_on_commit(self.users.session)

    # --- login / tokens -----------------------------------------------------------------------
    async def login(
        self, username: str, password: str, throttle: LoginThrottle | None = None
    ) -> tuple[str, TokenClaims]:
        now = datetime.now(UTC)
        user = await self.users.by_username(username)
        throttled = throttle is not None and await throttle.blocked(username)
        # Always verify a hash (a dummy for unknown users) so timing does not tell the cases apart.
        valid = await self.hasher.verify_async(password, user.password_hash if user else None)
        if not valid and not throttled and throttle is not None:
            await throttle.failed(username)  # unknown users too: nothing to enumerate by counting
        if user is None:
            raise LoginFailed()
        locked = user.locked_until is not None and user.locked_until > now
        if throttled or locked or not valid or user.disabled:
            if not throttled and not locked and not valid:
                self._record_failure(user, now)
            log.info(
                "login refused for %s (address throttled=%s, account locked=%s, disabled=%s)",
                username,
                throttled,
                locked,
                user.disabled,
            )
            raise LoginFailed()
        user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        return self.codec.issue(user.username, token_version=user.token_version)

    def _record_failure(self, user: User, now: datetime) -> None:
        user.failed_logins += 1
        limit = self.settings.security.login_global_max_failures
        if user.failed_logins >= limit:
            # Exponential back-off: each further failure doubles the lockout, up to an hour.
            lockout = timedelta(seconds=self.settings.security.login_lockout) * (
                2 ** (user.failed_logins - limit)
            )
            user.locked_until = now + min(lockout, MAX_LOCKOUT)

    async def authenticate(self, token: str) -> Principal:
        claims = self.codec.decode(token)
        callers = self.callers
        user = callers.get(claims.subject, claims.jti) if callers is not None else None
        if user is None:
            generation = callers.generation if callers is not None else 0
            # One round trip: the user's columns and the revocation check together.
            user = await self.users.caller(claims.subject, claims.jti)
            if user is None:
                if await self.revocations.is_revoked(claims.jti):
                    raise Unauthorized("token revoked")
                raise Unauthorized("user unknown or disabled")
            if callers is not None:
                callers.put(claims.subject, claims.jti, user, generation)
        user_id, username, role, disabled, token_version, revoked = user
        if revoked:
            raise Unauthorized("token revoked")
        if disabled:
            raise Unauthorized("user unknown or disabled")
        if token_version != claims.token_version:
            raise Unauthorized("token no longer valid (password or role changed)")
        return Principal(username=username, role=Role(role), token=claims, user_id=user_id)

    async def logout(self, principal: Principal) -> None:
        if principal.token is not None:
            self._changes_users()
            await self.revocations.revoke(principal.token.jti, principal.username, principal.token.expires_at)

    # --- user management ----------------------------------------------------------------------
    async def create_user(self, username: str, password: str, role: Role) -> User:
        # Names that differ only in case would read as one person in the audit log (and share the
        # login throttle's key): one of them is enough.
        existing = await self.users.same_name_any_case(username)
        if existing is None:
            user = User(username=username, password_hash=await self.hasher.hash_async(password), role=role)
            self._changes_users()
            try:
                async with self.users.session.begin_nested():
                    return await self.users.add(user)
            except IntegrityError:
                # Created meanwhile by another request: the unique index on lower(username) decided.
                existing = await self.users.same_name_any_case(username) or username
        raise Conflict(f"user {existing!r} already exists")

    async def list_users(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        return await self.users.list(limit=limit, offset=offset)

    async def get_user(self, username: str) -> User:
        user = await self.users.by_username(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def update_user(
        self, username: str, *, role: Role | None, disabled: bool | None, actor: str
    ) -> User:
        user = await self.get_user(username)
        if username == actor and (disabled or (role is not None and role != Role.ADMIN)):
            raise ValidationFailed("you cannot disable or demote yourself; ask another admin")
        self._changes_users()
        if role is not None and role != user.role:
            user.role = role
            user.token_version += 1
        if disabled is not None and disabled != user.disabled:
            user.disabled = disabled
            # Tokens issued before a disable stay dead after re-enabling: the user logs in again.
            user.token_version += 1
        await self.users.session.flush()
        return user

    async def reset_password(self, username: str, password: str) -> User:
        user = await self.get_user(username)
        self._changes_users()
        user.password_hash = await self.hasher.hash_async(password)
        user.token_version += 1
        user.failed_logins = 0
        user.locked_until = None
        await self.users.session.flush()
        return user

    async def ensure_admin(self, username: str, password: str) -> bool:
        """Create the first admin when there are no users at all. Returns whether it did."""
        if await self.users.count() > 0:
            return False
        await self.create_user(username, password, Role.ADMIN)
        return True
