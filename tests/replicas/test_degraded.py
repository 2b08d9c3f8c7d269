"""Pool exhaustion answers 503 fast (database.pool_timeout) instead of hanging."""

import time

from tests.conftest import make_settings, running_guard


async def test_pool_exhaustion_is_a_fast_503(pg_url, tmp_path):
    settings = make_settings(
        pg_url, tmp_path, database={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.5}
    )
    async with running_guard(settings) as guard:
        headers = await guard.headers("admin")
        async with guard.runtime.engine.connect() as held:  # every pooled connection is taken
            started = time.monotonic()
            response = await guard.client.get("/api/v1/components", headers=headers)
            took = time.monotonic() - started
            assert held is not None
        print(f"\npool exhausted: {response.status_code} in {took:.2f}s (pool_timeout 0.5s)")
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "service_unavailable"
        assert took < 3
        assert (await guard.client.get("/health")).status_code == 200
        assert (await guard.client.get("/api/v1/components", headers=headers)).status_code == 200
