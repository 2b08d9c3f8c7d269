"""The status page of a real guard (real checks against a loopback target, a real incident, its alert
and a healing attempt) renders in headless Chromium at phone and desktop widths; screenshots are saved."""

from __future__ import annotations

import httpx
import pytest

from tests.realclients.conftest import start_guard, stop_guard
from tests.realclients.loopback import Target, guard_config, wait_for

pytestmark = pytest.mark.realclients

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture
def populated_guard(tmp_path):
    with Target() as target:
        guard = start_guard(
            tmp_path,
            config_text=guard_config(
                target,
                recovery={
                    "strategies": [{"kind": "notify_only", "message": "page the feature team"}],
                    "max_attempts": 1,
                },
            ),
        )
        try:
            headers = guard.headers()

            def ready():
                status = httpx.get(f"{guard.url}/api/v1/status", headers=headers, timeout=5).json()
                by_name = {c["name"]: c["status"] for c in status["components"]}
                attempts = httpx.get(
                    f"{guard.url}/api/v1/healing/attempts", headers=headers, timeout=5
                ).json()
                alerts = httpx.get(f"{guard.url}/api/v1/alerts", headers=headers, timeout=5).json()
                items = attempts.get("items", attempts) if isinstance(attempts, dict) else attempts
                alert_items = alerts.get("items", alerts) if isinstance(alerts, dict) else alerts
                return (
                    by_name.get("api") == "healthy"
                    and by_name.get("feature-store") in ("critical", "failed")
                    and len(items) >= 1
                    and len(alert_items) >= 1
                )

            wait_for("an incident with its alert and healing attempt", ready, timeout=60)
            yield guard
        finally:
            stop_guard(guard)


def test_status_page_renders_on_phone_and_desktop(populated_guard, browser, artifacts_dir):
    outside: list[str] = []
    for name, viewport in VIEWPORTS.items():
        page = browser.new_page(viewport=viewport)

        def route(route):
            if route.request.url.startswith(populated_guard.url):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", route)
        response = page.goto(f"{populated_guard.url}/status", wait_until="networkidle")
        assert response.status == 200
        assert page.title() == "Pipeline Guard status"
        assert page.locator('meta[http-equiv="refresh"]').get_attribute("content") == "30"
        # The stylesheet applied (no unstyled page): the overall banner has its colour.
        banner = page.locator("section.overall")
        assert "Some systems degraded" in banner.inner_text() or "Major outage" in banner.inner_text()
        assert banner.evaluate("el => getComputedStyle(el).backgroundColor") != "rgba(0, 0, 0, 0)"
        assert page.locator("article.component").count() == 2
        api = page.locator('article[data-component="api"]')
        assert api.locator(".badge").inner_text() == "Operational"
        fs = page.locator('article[data-component="feature-store"]')
        assert fs.locator(".badge").inner_text() in ("Outage", "Failed")
        assert api.locator(".bars-24 .seg").count() == 24 and api.locator(".bars-7 .seg").count() == 7
        assert api.locator(".bars-24 .seg").last.evaluate("el => el.className").endswith("seg-up")
        assert fs.locator(".bars-24 .seg").last.evaluate("el => el.className").endswith("seg-down")
        assert page.locator("li.alert").count() >= 1
        assert "notify_only" in page.locator("li.healing").first.inner_text()
        # Readable on a phone: nothing wider than the viewport (no horizontal scrolling).
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], (
            f"{name}: page is {width}px wide in a {viewport['width']}px viewport"
        )
        page.screenshot(path=str(artifacts_dir / f"status-{name}.png"), full_page=True)
        page.close()
    assert outside == [], f"the page tried to reach outside hosts: {outside}"
