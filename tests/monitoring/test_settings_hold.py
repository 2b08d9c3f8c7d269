"""Settings that hold: every documented key of every check kind and of the recovery policy is set
over the API and in the YAML file (declared components), read back, and — where it is cheap — shown
to take effect on a real probe of a real loopback target.

The tables are the contract: a key added to a kind's validator or to the policy must be added here.
"""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from app.config.loading import load_settings
from app.healing.policy import DEFAULTS, parse_policy
from tests.conftest import make_settings
from tests.monitoring.conftest import FAST, add_component, monitored, status_of

PY = sys.executable
BANNER = "SSH-2.0-OpenSSH_9.6 pipeline guard test banner"


def http(target, **extra) -> dict:
    return {"kind": "http", "url": target.url("/ok"), **extra}


# (name, check builder(targets) -> check document, key, value sent, value read back)
CHECK_KEYS = [
    ("http-url", lambda t: http(t["http"]), "url", None, None),
    ("http-method", lambda t: http(t["http"]), "method", "head", "HEAD"),
    ("http-headers", lambda t: http(t["http"]), "headers", {"X-Team": "ml"}, {"X-Team": "ml"}),
    ("http-secret-headers", lambda t: http(t["http"]), "secret_headers", ["X-Team"], ["x-team"]),
    (
        "http-expected-status",
        lambda t: http(t["http"]),
        "expected_status",
        ["200-204", 302],
        [[200, 204], [302, 302]],
    ),
    ("http-body-contains", lambda t: http(t["http"]), "body_contains", "nominal", "nominal"),
    ("http-json-path", lambda t: http(t["http"], json_expected="ok"), "json_path", "status", "status"),
    ("http-json-expected", lambda t: http(t["http"], json_path="status"), "json_expected", "ok", "ok"),
    ("http-body", lambda t: http(t["http"], method="POST"), "body", {"a": 1}, {"a": 1}),
    ("http-degraded-after", lambda t: http(t["http"]), "degraded_after_ms", 250, 250.0),
    ("http-verify-tls", lambda t: http(t["http"]), "verify_tls", False, False),
    ("http-max-redirects", lambda t: http(t["http"]), "max_redirects", 0, 0),
    ("http-max-body", lambda t: http(t["http"]), "max_body_kib", 1, 1),
    ("http-timeout", lambda t: http(t["http"]), "timeout", 2, 2.0),
    ("tcp-host", lambda t: {"kind": "tcp", "port": t["banner"].port}, "host", "127.0.0.1", "127.0.0.1"),
    ("tcp-port", lambda t: {"kind": "tcp", "host": "127.0.0.1"}, "port", None, None),
    (
        "tcp-banner",
        lambda t: {"kind": "tcp", "host": "127.0.0.1", "port": t["banner"].port},
        "expect_banner",
        "SSH-",
        "SSH-",
    ),
    (
        "tcp-banner-max",
        lambda t: {"kind": "tcp", "host": "127.0.0.1", "port": t["banner"].port},
        "banner_max_bytes",
        16,
        16,
    ),
    (
        "tcp-timeout",
        lambda t: {"kind": "tcp", "host": "127.0.0.1", "port": t["banner"].port},
        "timeout",
        "1.5s",
        1.5,
    ),
    (
        "tcp-degraded",
        lambda t: {"kind": "tcp", "host": "127.0.0.1", "port": t["banner"].port},
        "degraded_after_ms",
        900,
        900.0,
    ),
    ("cmd-argv", lambda t: {"kind": "command"}, "argv", [PY, "-c", "pass"], [PY, "-c", "pass"]),
    ("cmd-cwd", lambda t: {"kind": "command", "argv": [PY, "-c", "pass"]}, "cwd", "/tmp", "/tmp"),
    (
        "cmd-env",
        lambda t: {"kind": "command", "argv": [PY, "-c", "pass"]},
        "env",
        {"STAGE": "etl"},
        {"STAGE": "etl"},
    ),
    (
        "cmd-env-allow",
        lambda t: {"kind": "command", "argv": [PY, "-c", "pass"]},
        "env_allow",
        ["HOME"],
        ["HOME"],
    ),
    ("cmd-max-output", lambda t: {"kind": "command", "argv": [PY, "-c", "pass"]}, "max_output_kib", 2, 2),
    ("cmd-timeout", lambda t: {"kind": "command", "argv": [PY, "-c", "pass"]}, "timeout", 3, 3.0),
    ("hb-period", lambda t: {"kind": "heartbeat"}, "period", "1h", None),
    ("hb-grace", lambda t: {"kind": "heartbeat", "period": "1h"}, "grace", "5m", None),
    ("hb-max-runtime", lambda t: {"kind": "heartbeat", "period": "1h"}, "max_runtime", "20m", None),
    ("hb-min-runtime", lambda t: {"kind": "heartbeat", "period": "1h"}, "min_runtime", "1m", None),
    ("plugin-callable", lambda t: {"kind": "plugin"}, "callable", "acme.checks:queue", "acme.checks:queue"),
    (
        "plugin-kwargs",
        lambda t: {"kind": "plugin", "callable": "acme.checks:queue"},
        "kwargs",
        {"q": "a"},
        {"q": "a"},
    ),
    ("plugin-timeout", lambda t: {"kind": "plugin", "callable": "acme.checks:queue"}, "timeout", 4, 4.0),
    ("common-interval", lambda t: http(t["http"]), "interval", "2m", 120.0),
    ("common-failure-threshold", lambda t: http(t["http"]), "failure_threshold", 5, 5),
    ("common-success-threshold", lambda t: http(t["http"]), "success_threshold", 2, 2),
]
# Heartbeat durations are stored under their canonical names, in seconds.
STORED_AS = {
    "period": ("period_s", 3600.0),
    "grace": ("grace_s", 300.0),
    "max_runtime": ("max_runtime_s", 1200.0),
    "min_runtime": ("min_runtime_s", 60.0),
}

RECOVERY_KEYS = [
    ("max_attempts", 5, 5),
    ("backoff_initial", "15s", 15.0),
    ("backoff_max", "10m", 600.0),
    ("cooldown", "2m", 120.0),
    ("breaker_threshold", 4, 4),
    ("breaker_window", "2h", 7200.0),
    ("verify_timeout", "90s", 90.0),
    ("grace_period", "12s", 12.0),
    ("approval_timeout", "30m", 1800.0),
    ("dry_run", True, True),
    ("require_approval", True, True),
    ("learned_ordering", True, True),
    ("heal_on", ["failed", "degraded"], ["degraded", "failed"]),
]
STRATEGIES = [
    (
        {
            "kind": "restart",
            "argv": [PY, "-c", "pass"],
            "cwd": "/tmp",
            "env": {"A": "b"},
            "timeout": 20,
            "success_exit_codes": [0, 3],
            "action_timeout": 25,
        },
        {
            "kind": "restart",
            "action_timeout": 25.0,
            "params": {
                "argv": [PY, "-c", "pass"],
                "cwd": "/tmp",
                "env": {"A": "********"},  # env values are write-only (shown masked to every role)
                "timeout": 20.0,
                "success_exit_codes": [0, 3],
            },
        },
    ),
    (
        {
            "kind": "webhook",
            "url": "http://127.0.0.1:9/rerun",
            "method": "put",
            "headers": {"X-A": "1"},
            "body": {"stage": "{component}"},
            "timeout": 7,
            "verify_tls": False,
        },
        {
            "kind": "webhook",
            "params": {
                "url": "http://127.0.0.1:9/rerun",
                "method": "PUT",
                "headers": [{"name": "X-A", "value": "1"}],
                "body": {"stage": "{component}"},
                "timeout": 7.0,
                "verify_tls": False,
            },
        },
    ),
    (
        {
            "kind": "kubernetes",
            "action": "scale",
            "workload_kind": "StatefulSet",
            "namespace": "ml",
            "name": "trainer",
            "context": "prod",
            "request_timeout_s": 5,
            "step": 1,
            "min_replicas": 1,
            "max_replicas": 4,
        },
        {
            "kind": "kubernetes",
            "params": {
                "action": "scale",
                "kind": "StatefulSet",
                "namespace": "ml",
                "kubeconfig": None,
                "context": "prod",
                "request_timeout_s": 5.0,
                "name": "trainer",
                "replicas": None,
                "step": 1,
                "min_replicas": 1,
                "max_replicas": 4,
            },
        },
    ),
    (
        {"kind": "notify_only", "message": "page the data team"},
        {"kind": "notify_only", "params": {"message": "page the data team"}},
    ),
]


def _expected(key, sent, read_back, check):
    if key in STORED_AS:
        return STORED_AS[key]
    return key, check[key] if read_back is None else read_back


def _document(case, targets) -> tuple[dict, str, object]:
    _, build, key, sent, read_back = case
    check = build(targets)
    if sent is None:  # the builder's own value of a required key
        sent = {"url": targets["http"].url("/ok"), "port": targets["banner"].port}[key]
    check[key] = sent
    stored_key, value = _expected(key, sent, read_back, check)
    return check, stored_key, value


@pytest.fixture
def targets(http_target, banner_target):
    return {"http": http_target, "banner": banner_target}


def _settings(db_url, tmp_path, **extra):
    return make_settings(db_url, tmp_path, pipeline={"monitoring": FAST}, **extra)


async def test_every_check_key_round_trips_through_the_api_and_yaml(db_url, tmp_path, targets):
    cases = [(case, *_document(case, targets)) for case in CHECK_KEYS]
    declared = [{"name": f"y-{case[0]}", "check": check} for case, check, _, _ in cases]
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump({"components": declared}))
    base = _settings(db_url, tmp_path)
    settings = load_settings(path, environ={}, **base.model_dump(exclude={"components", "config"}))
    async with monitored(settings) as (guard, scheduler):
        for case, check, stored_key, value in cases:
            name = f"a-{case[0]}"
            await add_component(guard, name, check)
            for shown in (name, f"y-{case[0]}"):
                response = await guard.client.get(
                    f"/api/v1/components/{shown}", headers=await guard.headers("viewer")
                )
                assert response.status_code == 200, response.text
                doc = response.json()["check"]
                assert doc.get(stored_key) == value, (shown, stored_key, doc)
                assert doc["kind"] == check["kind"]
        # A key no kind reads is refused, not stored and ignored.
        for check in (
            {"kind": "http", "url": targets["http"].url("/ok"), "expected_staus": 200},
            {"kind": "heartbeat", "period": "1h", "timeout": 5},
            {"kind": "tcp", "host": "127.0.0.1", "port": 1, "argv": ["x"]},
        ):
            response = await guard.client.post(
                "/api/v1/components",
                headers=await guard.headers("admin"),
                json={"name": "typo", "check": check},
            )
            assert response.status_code == 422, response.text
            assert "unknown parameter" in str(response.json()["error"]["details"])
        # The scheduler reads the common keys as stored.
        await scheduler.refresh()
        ids = {
            c["name"]: c["id"]
            for c in (
                await guard.client.get("/api/v1/components?limit=500", headers=await guard.headers("viewer"))
            ).json()["items"]
        }
        assert scheduler.entries[ids["a-common-interval"]].interval == 120.0
        assert scheduler.entries[ids["y-common-interval"]].interval == 120.0
        assert scheduler.thresholds_for(ids["a-common-failure-threshold"]).failure_threshold == 5
        assert scheduler.thresholds_for(ids["y-common-success-threshold"]).success_threshold == 2
        assert scheduler.entries[ids["a-http-timeout"]].timeout == 2.0


# (name, check builder(targets), expected outcome, text the result's detail must contain)
EFFECTS = [
    (
        "timeout",
        lambda t: {"kind": "http", "url": t["http"].url("/hang"), "timeout": 0.5},
        "down",
        "timeout after 0.5s",
    ),
    (
        "method-headers-status-body",
        lambda t: {
            "kind": "http",
            "url": t["http"].url("/500"),
            "headers": {"Authorization": "Bearer xyz"},
            "expected_status": [500],
            "body_contains": "boom Bearer xyz",
        },
        "up",
        "HTTP 500",
    ),
    (
        "post-body",
        lambda t: {
            "kind": "http",
            "url": t["http"].url("/echo"),
            "method": "POST",
            "body": {"a": 7},
            "json_path": "got.a",
            "json_expected": 7,
        },
        "up",
        "HTTP 200",
    ),
    (
        "json-mismatch",
        lambda t: {
            "kind": "http",
            "url": t["http"].url("/echo"),
            "method": "POST",
            "body": {"a": 7},
            "json_path": "got.a",
            "json_expected": 8,
        },
        "down",
        "json_path got.a",
    ),
    (
        "degraded-after",
        lambda t: {"kind": "http", "url": t["http"].url("/slow?s=0.3"), "degraded_after_ms": 50},
        "degraded",
        "slow",
    ),
    (
        "max-redirects",
        lambda t: {
            "kind": "http",
            "url": t["http"].url("/redirect-ok"),
            "max_redirects": 0,
            "expected_status": [200],
        },
        "down",
        "HTTP 302",
    ),
    (
        "max-body",
        lambda t: {
            "kind": "http",
            "url": t["http"].url("/huge"),
            "body_contains": "never there",
            "max_body_kib": 1,
        },
        "down",
        "first 1 KiB",
    ),
    (
        "tcp-banner",
        lambda t: {"kind": "tcp", "host": "127.0.0.1", "port": t["banner"].port, "expect_banner": "SSH-2.0"},
        "up",
        "banner matched",
    ),
    (
        "tcp-banner-max",
        lambda t: {
            "kind": "tcp",
            "host": "127.0.0.1",
            "port": t["banner"].port,
            "expect_banner": "guard test banner",
            "banner_max_bytes": 8,
        },
        "down",
        "SSH-2.0-",
    ),
    (
        "tcp-timeout",
        lambda t: {
            "kind": "tcp",
            "host": "127.0.0.1",
            "port": t["silent"].port,
            "expect_banner": "x",
            "timeout": 0.4,
        },
        "down",
        "banner does not contain",
    ),
    (
        "cmd-cwd-env",
        lambda t: {
            "kind": "command",
            "cwd": "/tmp",
            "env": {"STAGE": "etl"},
            "env_allow": ["PG_SETTINGS_TEST"],
            "argv": [
                PY,
                "-c",
                (
                    "import os,sys; sys.exit(os.getcwd() + ' ' + os.environ['STAGE']"
                    " + ' ' + os.environ['PG_SETTINGS_TEST'])"
                ),
            ],
        },
        "down",
        "/tmp etl from-env",
    ),
    (
        "cmd-timeout",
        lambda t: {"kind": "command", "argv": [PY, "-c", "import time; time.sleep(30)"], "timeout": 0.4},
        "down",
        "timeout after 0.4s",
    ),
]


@pytest.fixture
def effect_targets(http_target, banner_target, silent_target):
    return {"http": http_target, "banner": banner_target, "silent": silent_target}


async def test_check_keys_take_effect_on_real_probes(db_url, tmp_path, effect_targets, monkeypatch):
    monkeypatch.setenv("PG_SETTINGS_TEST", "from-env")
    # The global timeout is long: only the check's own timeout can make these probes end early.
    settings = make_settings(db_url, tmp_path, pipeline={"monitoring": {**FAST, "health_check_timeout": 20}})
    async with monitored(settings) as (guard, scheduler):
        for name, build, _, _ in EFFECTS:
            await add_component(guard, name, build(effect_targets))
        await scheduler.run_once()
        for name, _, outcome, text in EFFECTS:
            state = await status_of(guard, name)
            assert state["last_outcome"] == outcome, (name, state)
            assert text in state["last_detail"], (name, state)


async def test_every_recovery_key_round_trips_and_is_read_by_the_engine(db_url, tmp_path):
    recovery = {key: sent for key, sent, _ in RECOVERY_KEYS}
    recovery["strategies"] = [sent for sent, _ in STRATEGIES]
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump({"components": [{"name": "declared", "recovery": recovery}]}))
    base = make_settings(
        db_url,
        tmp_path,
        security={"ssrf_allowlist": ["127.0.0.1/32"]},
        healing={"command_actions_enabled": True},
    )
    settings = load_settings(path, environ={}, **base.model_dump(exclude={"components", "config"}))
    assert set(DEFAULTS) == {key for key, _, _ in RECOVERY_KEYS}, "a policy key is missing from this table"
    async with monitored(settings) as (guard, _):
        await guard.client.post(
            "/api/v1/components",
            headers=await guard.headers("admin"),
            json={"name": "api", "recovery": recovery},
        )
        for name in ("api", "declared"):
            doc = (
                await guard.client.get(f"/api/v1/components/{name}", headers=await guard.headers("viewer"))
            ).json()
            stored = doc["recovery"]
            for key, _, value in RECOVERY_KEYS:
                assert stored[key] == value, (name, key, stored)
            assert stored["strategies"] == [expected for _, expected in STRATEGIES], (
                name,
                stored["strategies"],
            )
            policy = parse_policy(stored)  # what the engine decides with
            for key, _, value in RECOVERY_KEYS:
                parsed = getattr(policy, key)
                assert (list(parsed) if isinstance(parsed, tuple) else parsed) == value, (name, key)
            assert [e.timeout_s for e in policy.strategies] == [25.0, 120.0, 120.0, 120.0]
        response = await guard.client.post(
            "/api/v1/components",
            headers=await guard.headers("admin"),
            json={"name": "typo", "recovery": {"max_atempts": 2}},
        )
        assert response.status_code == 422 and "recovery.max_atempts" in str(
            response.json()["error"]["details"]
        )
    assert os.environ.get("PG_SETTINGS_TEST") is None
