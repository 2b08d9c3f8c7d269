"""Headers the guard would send and aiohttp (or the receiving API) would refuse are refused when they
are saved, over the API, with a 422 that names the field and never echoes a value: an http check's
header names and values, a recovery webhook's, a recovery webhook with both URL credentials and an
Authorization header, and names the Kubernetes strategy and plugin checks read with a trailing
newline. Valid ones (an RFC 9110 token such as ``X_Trace.Id``) are still accepted."""

from __future__ import annotations

import pytest

from app.checks.base import CheckConfigError
from app.checks.plugin import PluginCheck
from app.healing.strategies.base import StrategyConfigError
from app.healing.strategies.kubernetes import KubernetesStrategy
from tests.conftest import make_settings, running_guard

SECRET = "s3cr3t-value"


@pytest.fixture
async def api(db_url, tmp_path):
    settings = make_settings(db_url, tmp_path, security={"ssrf_allowlist": ["127.0.0.1/32"]})
    async with running_guard(settings) as guard:
        yield guard, await guard.headers("admin")


def http_check(headers: dict, url: str = "http://127.0.0.1:9/health") -> dict:
    return {"kind": "http", "url": url, "headers": headers}


def webhook(headers: list, url: str = "http://127.0.0.1:9/deploy") -> dict:
    return {"strategies": [{"kind": "webhook", "url": url, "headers": headers}]}


@pytest.mark.parametrize(
    ("name", "document"),
    [
        ("space-in-name", {"check": http_check({"X Api": "1"})}),
        ("non-ascii-name", {"check": http_check({"Ä": "1"})}),
        ("nul-in-value", {"check": http_check({"X-Token": f"{SECRET}\x00"})}),
        ("escape-in-value", {"check": http_check({"X-Token": f"\x1b{SECRET}"})}),
        ("webhook-space-in-name", {"recovery": webhook([{"name": "X Api", "value": "1"}])}),
        ("webhook-nul-in-value", {"recovery": webhook([{"name": "X-Token", "value": f"{SECRET}\x00"}])}),
        (
            "webhook-url-credentials-and-authorization",
            {
                "recovery": webhook(
                    [{"name": "Authorization", "value": f"Bearer {SECRET}"}],
                    url=f"http://ci:{SECRET}@127.0.0.1:9/deploy",
                )
            },
        ),
    ],
)
async def test_an_unsendable_header_is_a_422_that_changes_nothing(api, name, document):
    guard, admin = api
    response = await guard.client.post("/api/v1/components", headers=admin, json={"name": name, **document})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "validation_error"
    assert SECRET not in response.text
    assert (await guard.client.get(f"/api/v1/components/{name}", headers=admin)).status_code == 404


async def test_token_header_names_stay_accepted(api):
    guard, admin = api
    document = {
        "name": "fine",
        "check": http_check({"X_Trace.Id": "a\tb", "X-Api-Key": SECRET}),
        "recovery": webhook([{"name": "X_Deploy.Key", "value": SECRET, "secret": True}]),
    }
    response = await guard.client.post("/api/v1/components", headers=admin, json=document)
    assert response.status_code == 201, response.text


def test_names_with_a_trailing_newline_are_refused():
    strategy = KubernetesStrategy.__new__(KubernetesStrategy)
    base = {"action": "rollout_restart", "namespace": "ml", "name": "trainer"}
    strategy.validate(dict(base))
    for field in ("namespace", "name"):
        with pytest.raises(StrategyConfigError):
            strategy.validate({**base, field: base[field] + "\n"})
    check = PluginCheck()
    check.validate({"callable": "os.path:exists"})
    with pytest.raises(CheckConfigError):
        check.validate({"callable": "os.path:exists\n"})
