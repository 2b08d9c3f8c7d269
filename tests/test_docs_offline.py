"""`/docs` and `/redoc` must work without internet: every asset comes from the package itself."""

# No `from __future__ import annotations`: FastAPI must resolve the Annotated deps of the local routes.
import re
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from fastapi.testclient import TestClient

from app.api.docs import STATIC_DIR, mount_docs

TOKEN_URL = "/api/v1/auth/token"
ABSOLUTE_URL = re.compile(r"""(?i)(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""")
ASSET_ATTR = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
JS_URL = re.compile(r"""(?:url|oauth2RedirectUrl)\s*:\s*(?:window\.location\.origin\s*\+\s*)?'([^']*)'""")


def build_app(*, enabled: bool = True) -> FastAPI:
    app = FastAPI(title="Docs test", docs_url=None, redoc_url=None)
    oauth2 = OAuth2PasswordBearer(tokenUrl=TOKEN_URL)

    @app.post(TOKEN_URL)
    async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
        if (form.username, form.password) != ("admin", "secret"):
            raise HTTPException(status_code=401, detail="bad credentials")
        return {"access_token": "tok-123", "token_type": "bearer"}

    @app.get("/api/v1/whoami")
    async def whoami(token: Annotated[str, Depends(oauth2)]) -> dict[str, str]:
        return {"token": token}

    mount_docs(app, enabled=enabled)
    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(build_app())


def _local_urls(html: str) -> list[str]:
    return ASSET_ATTR.findall(html) + JS_URL.findall(html)


def test_docs_page_references_only_local_assets(client: TestClient) -> None:
    resp = client.get("/docs")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    html = resp.text
    assert not ABSOLUTE_URL.search(html), ABSOLUTE_URL.search(html)
    assert "http://" not in html and "https://" not in html
    urls = _local_urls(html)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in urls
    assert "/static/swagger-ui/swagger-ui.css" in urls
    assert "/static/swagger-ui/favicon-32x32.png" in urls
    assert "/openapi.json" in urls
    assert "/docs/oauth2-redirect" in urls
    for url in urls:
        assert url.startswith("/"), url
        assert client.get(url).status_code == 200, url
    assert '"persistAuthorization": true' in html
    assert '"validatorUrl": null' in html


def test_redoc_page_references_only_local_assets(client: TestClient) -> None:
    resp = client.get("/redoc")
    assert resp.status_code == 200
    html = resp.text
    assert "http://" not in html and "https://" not in html
    assert "fonts.googleapis" not in html
    assert '<script src="/static/redoc/redoc.standalone.js">' in html
    assert 'spec-url="/openapi.json"' in html
    for url in _local_urls(html):
        assert url.startswith("/static/"), url
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/swagger-ui/swagger-ui-bundle.js", ("text/javascript", "application/javascript")),
        ("/static/swagger-ui/swagger-ui.css", ("text/css",)),
        ("/static/swagger-ui/favicon-32x32.png", ("image/png",)),
        ("/static/redoc/redoc.standalone.js", ("text/javascript", "application/javascript")),
    ],
)
def test_static_assets_are_served_with_their_content_type(
    client: TestClient, path: str, content_type: tuple[str, ...]
) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert resp.headers["content-type"].split(";")[0].strip() in content_type
    on_disk = (STATIC_DIR / path.removeprefix("/static/")).read_bytes()
    assert resp.content == on_disk
    assert "etag" in resp.headers  # browsers revalidate instead of re-downloading 1.7 MB


def test_vendored_versions_render_openapi_31_and_ship_licenses() -> None:
    bundle = (STATIC_DIR / "swagger-ui/swagger-ui-bundle.js").read_bytes()
    assert len(bundle) > 500_000
    for name in ("swagger-ui/LICENSE", "redoc/LICENSE"):
        assert (STATIC_DIR / name).stat().st_size > 0
    # Swagger UI 5.x is the first line that renders OpenAPI 3.1 (what FastAPI emits).
    version = re.search(rb'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', bundle)
    assert version and int(version.group(1)) >= 5, version


def test_oauth2_redirect_page_is_served(client: TestClient) -> None:
    resp = client.get("/docs/oauth2-redirect")
    assert resp.status_code == 200
    assert "oauth2" in resp.text.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']https?://""", resp.text)


def test_password_flow_in_schema_points_at_the_local_token_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["openapi"].startswith("3.1")
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == TOKEN_URL
    # The same round trip the Authorize button makes.
    token = client.post(TOKEN_URL, data={"username": "admin", "password": "secret"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    assert client.get("/api/v1/whoami", headers=headers).json() == {"token": "tok-123"}
    assert client.get("/api/v1/whoami").status_code == 401


def test_docs_pages_stay_out_of_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/docs/oauth2-redirect", "/redoc"} & set(paths)


def test_disabled_docs_are_not_served() -> None:
    client = TestClient(build_app(enabled=False))
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 404


def test_urls_carry_the_proxy_root_path() -> None:
    client = TestClient(build_app(), root_path="/guard")
    html = client.get("/docs").text
    assert "/guard/static/swagger-ui/swagger-ui-bundle.js" in html
    assert "url: '/guard/openapi.json'" in html
    assert "'/guard/docs/oauth2-redirect'" in html
    assert 'spec-url="/guard/openapi.json"' in client.get("/redoc").text


def test_mounting_twice_keeps_one_static_mount() -> None:
    app = build_app()
    mount_docs(app)
    assert [r.path for r in app.router.routes].count("/static") == 1
