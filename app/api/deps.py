"""Request dependencies: the session (transaction owner), settings, state, the caller, permissions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Permission, Role
from app.auth.service import AuthService, Principal
from app.config.settings import Settings
from app.core.errors import Forbidden, PipelineGuardError, ServiceUnavailable, Unauthorized

if TYPE_CHECKING:
    from app.platform.lifespan import GuardState

TOKEN_URL = "/api/v1/auth/token"
oauth2_scheme = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def get_state(request: Request) -> GuardState:
    return request.app.state.guard


def get_settings(request: Request) -> Settings:
    return request.app.state.guard.settings


StateDep = Annotated["GuardState", Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The one transaction owner for a request: commit on success, roll back on error.

    ``scope="function"`` (below) makes the commit happen before the response is sent, so a 2xx is
    only ever returned for data that is durably stored.
    """
    state: GuardState = request.app.state.guard
    if state.sessionmaker is None:
        raise ServiceUnavailable("the database is not initialised yet")
    session = state.sessionmaker()
    try:
        yield session
        await session.commit()
    except PipelineGuardError as exc:
        if getattr(exc, "keeps_transaction", False):
            await session.commit()
        else:
            await session.rollback()
        raise
    except BaseException:
        await session.rollback()
        raise
    finally:
        await session.close()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def get_auth_service(request: Request, session: SessionDep) -> AuthService:
    state: GuardState = request.app.state.guard
    return AuthService(session, state.settings, state.codec, state.hasher)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]

DEV_PRINCIPAL = Principal(username="anonymous-dev", role=Role.ADMIN)


async def current_principal(
    request: Request,
    auth: AuthServiceDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    state: GuardState = request.app.state.guard
    if not state.settings.security.enabled:
        principal = DEV_PRINCIPAL
    elif not token:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    else:
        principal = await auth.authenticate(token)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission):
    """A dependency that lets the call through only with ``permission``.

    The permission is recorded on the dependency so the route x role test can find it.
    """

    async def dependency(principal: CurrentUser) -> Principal:
        if permission not in principal.permissions:
            raise Forbidden(f"role {principal.role.value!r} lacks permission {permission.value!r}")
        return principal

    dependency.__permission__ = permission  # type: ignore[attr-defined]
    dependency.__name__ = f"require_{permission.value}"
    return Depends(dependency)


def Requires(permission: Permission):  # capitalised: it reads like a type in signatures
    return Annotated[Principal, require(permission)]
