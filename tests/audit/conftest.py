from __future__ import annotations

import pytest

from tests.conftest import make_settings, running_guard


@pytest.fixture
async def audited(db_url, tmp_path):
    settings = make_settings(
        db_url,
        tmp_path,
        security={"ssrf_allowlist": ["127.0.0.1/32"], "alertmanager_token": "am-token-0123456789abcdef"},
    )
    async with running_guard(settings) as g:
        yield g
