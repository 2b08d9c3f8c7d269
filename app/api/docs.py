"""Interactive API docs (Swagger UI, ReDoc) served from assets vendored in the package.

FastAPI's default `/docs` and `/redoc` load their JavaScript and CSS from a CDN and render a blank
page without internet access. The guard often runs where there is none, so the assets live in
`app/static/` (see `app/static/VENDORED.md` for versions and how to upgrade) and the pages below
reference only same-origin URLs.

The owner of the app creates it with `docs_url=None, redoc_url=None` and calls `mount_docs(app)`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_PREFIX = "/static"

DOCS_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"

SWAGGER_JS = f"{STATIC_PREFIX}/swagger-ui/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC_PREFIX}/swagger-ui/swagger-ui.css"
FAVICON = f"{STATIC_PREFIX}/swagger-ui/favicon-32x32.png"
REDOC_JS = f"{STATIC_PREFIX}/redoc/redoc.standalone.js"

SWAGGER_UI_PARAMETERS = {
    # Keep the bearer token across page reloads while an operator explores the API.
    "persistAuthorization": True,
    # Swagger UI would otherwise ask validator.swagger.io to validate the spec: no outside calls.
    "validatorUrl": None,
}


def mount_static(app: FastAPI) -> None:
    """Serve `app/static/` at `/static` once, whoever asks first (docs, status page)."""
    for route in app.router.routes:
        if isinstance(route, Mount) and route.path == STATIC_PREFIX:
            return
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")


def _root_path(request: Request) -> str:
    # Behind a proxy that strips a prefix, every URL in the page must carry it.
    return str(request.scope.get("root_path", "")).rstrip("/")


def mount_docs(app: FastAPI, *, enabled: bool = True) -> None:
    """Register `/docs`, `/docs/oauth2-redirect` and `/redoc` backed by the vendored assets.

    With `enabled=False` (production may turn the docs off) no page is registered; `/static` is still
    mounted because other pages share it. Nothing is registered when the app has no OpenAPI schema.
    """
    mount_static(app)
    if not enabled or not app.openapi_url:
        return
    openapi_url = app.openapi_url
    title = app.title

    async def swagger_ui_html(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=root + SWAGGER_JS,
            swagger_css_url=root + SWAGGER_CSS,
            swagger_favicon_url=root + FAVICON,
            oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc_html(request: Request) -> HTMLResponse:
        root = _root_path(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=root + REDOC_JS,
            redoc_favicon_url=root + FAVICON,
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_URL, swagger_ui_html, methods=["GET"], include_in_schema=False)
    app.add_api_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc_html, methods=["GET"], include_in_schema=False)
