"""/api/v1/auth (token, logout, me) and /api/v1/users (admin user management)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.api.deps import AuthServiceDep, CanAdmin, CurrentUser, LimiterDep, MetricsDep
from app.api.pagination import Page
from app.api.ratelimit import client_key
from app.auth.schemas import Me, PasswordReset, TokenResponse, UserCreate, UserOut, UserPage, UserUpdate
from app.auth.service import LoginFailed
from app.auth.throttle import LoginThrottle
from app.core.errors import error_responses
from app.db.models import User

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.post("/token", response_model=TokenResponse, responses=error_responses(401, 422, 429))
async def issue_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: AuthServiceDep,
    limiter: LimiterDep,
    metrics: MetricsDep,
) -> TokenResponse:
    """OAuth2 password flow: exchange a username and password for a bearer token (Swagger's Authorize)."""
    try:
        throttle = LoginThrottle(limiter, client_key(request.scope, limiter.proxies))
        token, claims = await auth.login(form.username, form.password, throttle)
    except LoginFailed:
        metrics.login_failures.inc()
        raise
    return TokenResponse(
        access_token=token,
        expires_in=int((claims.expires_at - claims.issued_at).total_seconds()),
        expires_at=claims.expires_at,
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(principal: CurrentUser, auth: AuthServiceDep) -> Response:
    """Revoke the token used for this call."""
    await auth.logout(principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=Me, responses=error_responses(401))
async def me(principal: CurrentUser) -> Me:
    return Me(
        username=principal.username,
        role=principal.role,
        permissions=sorted(p.value for p in principal.permissions),
    )


@users_router.get("", response_model=UserPage, responses=error_responses(401, 403))
async def list_users(_: CanAdmin, auth: AuthServiceDep, page: Annotated[Page, Depends()]) -> UserPage:
    items, total = await auth.list_users(limit=page.limit, offset=page.offset)
    return UserPage(
        items=[UserOut.model_validate(u) for u in items], total=total, limit=page.limit, offset=page.offset
    )


@users_router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 409, 422),
)
async def create_user(data: UserCreate, _: CanAdmin, auth: AuthServiceDep) -> User:
    return await auth.create_user(data.username, data.password, data.role)


@users_router.get("/{username}", response_model=UserOut, responses=error_responses(401, 403, 404))
async def get_user(username: str, _: CanAdmin, auth: AuthServiceDep) -> User:
    return await auth.get_user(username)


@users_router.patch("/{username}", response_model=UserOut, responses=error_responses(401, 403, 404, 422))
async def update_user(username: str, data: UserUpdate, principal: CanAdmin, auth: AuthServiceDep) -> User:
    """Change a user's role or disable/enable it; takes effect on the user's next request."""
    return await auth.update_user(username, role=data.role, disabled=data.disabled, actor=principal.username)


@users_router.post(
    "/{username}/password", response_model=UserOut, responses=error_responses(401, 403, 404, 422)
)
async def reset_password(username: str, data: PasswordReset, _: CanAdmin, auth: AuthServiceDep) -> User:
    """Set a new password; the user's existing tokens stop working."""
    return await auth.reset_password(username, data.password)
