"""`GET /status`: the server-rendered status page (Jinja2, autoescaped, refreshes itself every 30 s).

Access follows `security.status_page_public` (default true). When it is false the page needs a user
with `monitor_health`. Browsers cannot attach a bearer header to a plain page load, so the page
accepts `Authorization: Bearer <token>` (proxies, curl, dashboards that inject headers) and otherwise
answers 401 with an HTML page that says so and links to `/docs`, where the same data is available via
`GET /api/v1/status` after **Authorize**. Tokens are never accepted in the URL (they would end up in
logs and browser history).

The path is listed in `PUBLIC_PATHS` because this route does its own, setting-dependent check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from app.api.deps import AuthServiceDep, RuntimeDep, SessionDep, oauth2_scheme
from app.auth.permissions import Permission
from app.config.sections import SecuritySection
from app.core.errors import PipelineGuardError
from app.statuspage.service import StatusPageService

# Autoescape everything (not only *.html): component names, messages and details come from users.
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"), autoescape=True
    )
)
REFRESH_SECONDS = 30

router = APIRouter(tags=["status page"])


def _time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "—"


def _percent(value) -> str:
    return "—" if value is None else f"{value:.2f}%"


TEMPLATES.env.filters["utc"] = _time
TEMPLATES.env.filters["pct"] = _percent


async def _access_denied(
    request: Request, auth: AuthServiceDep, security: SecuritySection, token: str | None
) -> HTMLResponse | None:
    """None when the caller may see the page, else the HTML answer explaining why not."""
    settings = security
    if settings.status_page_public or not settings.enabled:
        return None
    reason, code = "This status page requires a login.", 401
    if token:
        try:
            principal = await auth.authenticate(token)
        except PipelineGuardError:
            reason = "The token sent with this request is invalid or expired."
        else:
            if Permission.MONITOR_HEALTH in principal.permissions:
                return None
            reason, code = (
                f"Role {principal.role.value!r} may not view the status page (needs monitor_health).",
                403,
            )
    root = str(request.scope.get("root_path", "")).rstrip("/")
    response = TEMPLATES.TemplateResponse(
        request,
        "status/denied.html",
        {"reason": reason, "docs_url": f"{root}/docs", "root": root},
        status_code=code,
    )
    if code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status_page(
    request: Request,
    session: SessionDep,
    auth: AuthServiceDep,
    rt: RuntimeDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> HTMLResponse:
    denied = await _access_denied(request, auth, rt.settings.security, token)
    if denied is not None:
        return denied
    page = await StatusPageService(session, rt).build()
    root = str(request.scope.get("root_path", "")).rstrip("/")
    response = TEMPLATES.TemplateResponse(
        request, "status/page.html", {"page": page, "refresh": REFRESH_SECONDS, "root": root}
    )
    response.headers["Cache-Control"] = "no-store"
    return response
