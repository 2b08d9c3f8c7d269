"""The config file's caching: section drives the metrics cache; the never-used scaling: section is refused."""

from __future__ import annotations

from app.config.loading import load_settings, validate_config_file
from tests.conftest import TEST_SECRET, running_guard


def _config(tmp_path, db_url, body: str):
    path = tmp_path / "guard.yaml"
    path.write_text(
        f"env: test\ndatabase_url: {db_url}\ndata_dir: {tmp_path / 'var'}\n"
        f"security:\n  secret_key: {TEST_SECRET}\n  rate_limiting:\n    enabled: false\n{body}"
    )
    return load_settings(path, environ={})


async def _latest_twice(guard, component: str) -> None:
    headers = await guard.headers("operator")
    for _ in range(2):
        r = await guard.client.get("/api/v1/metrics/latest", params={"component": component}, headers=headers)
        assert r.status_code == 200, r.text


async def test_caching_section_from_yaml_sets_ttl_and_size(db_url, tmp_path):
    settings = _config(tmp_path, db_url, "caching:\n  enabled: true\n  ttl: 42s\n  max_entries: 2\n")
    async with running_guard(settings) as guard:
        for name in ("a", "b", "c"):
            await _latest_twice(guard, name)
        stats = guard.runtime.status_sections["cache"]()
        assert stats["ttl_seconds"] == 42.0
        assert stats["max_entries"] == 2
        assert stats["entries"] == 2  # the oldest of three keys was evicted
        assert stats["hits"] == 3


async def test_caching_disabled_in_yaml_reads_the_database_every_time(db_url, tmp_path):
    settings = _config(tmp_path, db_url, "caching:\n  enabled: false\n")
    async with running_guard(settings) as guard:
        await _latest_twice(guard, "etl")
        r = await guard.client.get("/api/v1/status/detailed", headers=await guard.headers("operator"))
        assert r.status_code == 200, r.text
        stats = guard.runtime.status_sections["cache"]()
        assert stats["enabled"] is False
        assert stats["hits"] == 0 and stats["entries"] == 0


def test_scaling_section_is_refused_with_a_pointer(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("scaling:\n  min_instances: 1\n  max_instances: 10\n")
    [problem] = validate_config_file(path, environ={})
    assert "scaling" in problem and "min_replicas/max_replicas" in problem
