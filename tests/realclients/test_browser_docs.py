"""Swagger UI renders and its Authorize button logs in, in headless Chromium with no network."""

from __future__ import annotations

import pytest

from tests.realclients.conftest import ADMIN_PASSWORD

pytestmark = pytest.mark.realclients


# ReDoc's "API docs by Redocly" footer links a logo image from its CDN; without network it is simply
# not shown. It is the one outside request we tolerate (an image, nothing the page needs to work).
TOLERATED = ("https://cdn.redoc.ly/redoc/logo-mini.svg",)


def _block_outside(page, live_url: str, outside: list[str]) -> None:
    def route(route):
        if route.request.url.startswith(live_url):
            route.continue_()
        else:
            if route.request.url not in TOLERATED:
                outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)


def test_docs_render_and_authorize_offline(live_guard, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    outside: list[str] = []
    _block_outside(page, live_guard.url, outside)
    page.goto(f"{live_guard.url}/docs", wait_until="networkidle")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20000)
    assert "Pipeline Guard" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".opblock").count() > 5

    page.click("button.authorize")
    page.wait_for_selector(".auth-container input#oauth_username", timeout=10000)
    page.fill(".auth-container input#oauth_username", "admin")
    page.fill(".auth-container input#oauth_password", ADMIN_PASSWORD)
    page.click(".auth-btn-wrapper button.authorize")
    page.wait_for_selector(".auth-container h6:has-text('Authorized')", timeout=10000)
    assert page.locator("button[aria-label='Remove authorization']").count() == 1
    page.screenshot(path=str(artifacts_dir / "docs-authorized.png"), full_page=False)
    page.click(".btn-done")

    # Use the token: expand GET /api/v1/auth/me, try it out, execute.
    op = page.locator("#operations-auth-me_api_v1_auth_me_get")
    op.locator(".opblock-summary").click()
    op.locator("button.try-out__btn").click()
    op.locator("button.execute").click()
    live = op.locator(".live-responses-table tbody .response-col_status")
    live.first.wait_for(timeout=10000)
    status = live.first.inner_text().strip()
    assert status.startswith("200"), status
    assert '"role": "admin"' in op.locator(".live-responses-table tbody .microlight").first.inner_text()
    page.screenshot(path=str(artifacts_dir / "docs-me.png"), full_page=False)
    assert outside == [], f"the page tried to reach outside hosts: {outside}"


def test_redoc_renders_offline(live_guard, browser, artifacts_dir):
    page = browser.new_page()
    outside: list[str] = []
    _block_outside(page, live_guard.url, outside)
    page.goto(f"{live_guard.url}/redoc", wait_until="networkidle")
    page.wait_for_selector("h1", timeout=20000)
    assert "Pipeline Guard" in page.inner_text("h1")
    page.screenshot(path=str(artifacts_dir / "redoc.png"))
    assert outside == []
