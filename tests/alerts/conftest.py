from __future__ import annotations

import pytest

from tests.conftest import make_settings, running_guard

AM_TOKEN = "am-token-0123456789abcdef"


@pytest.fixture
def alert_settings(db_url, tmp_path):
    return make_settings(
        db_url,
        tmp_path,
        security={"ssrf_allowlist": ["127.0.0.1/32"], "alertmanager_token": AM_TOKEN},
        alerting={"cooldown": 60},
    )


@pytest.fixture
async def aguard(alert_settings):
    async with running_guard(alert_settings) as g:
        yield g
