"""KubernetesStrategy and KubeClient against the kmock API emulator on 127.0.0.1.

kmock's pytest plugin provides the ``kmock`` fixture: a KubernetesEmulator served on a random
loopback port (``kmock.url``). Objects are seeded with ``kmock.objects[resource, ns, name] = {...}``,
explicit answers with ``kmock['get /path'] << 403 << {...}``, and every received request is kept:
``list(kmock)`` yields them with ``.method``, ``.url``, ``.params``, ``.headers`` and ``.data``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.healing.strategies.base import ActionContext, StrategyConfigError, run_bounded
from app.healing.strategies.kubernetes import INCIDENT_ANNOTATION, KubernetesStrategy, default_client_factory
from app.outbound.kube import KubeClient, KubeConfig, KubeError, load_incluster, load_kubeconfig
from tests.ports import free_port

DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/trainer"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
STARTED = datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
TOKEN = "test-token-123"


@pytest.fixture
def strategy(kmock) -> KubernetesStrategy:
    def factory(params: dict[str, Any]) -> KubeClient:
        config = KubeConfig(server=str(kmock.url).rstrip("/"), token=TOKEN)
        return KubeClient(config, timeout_s=params["request_timeout_s"])

    return KubernetesStrategy(client_factory=factory)


@pytest.fixture
def deployment(kmock) -> dict[str, Any]:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trainer", "namespace": "ml"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "trainer"}}}},
    }
    kmock.objects[kmock.resource("apps/v1/deployments"), "ml", "trainer"] = obj
    return obj


def make_ctx(
    strategy: KubernetesStrategy,
    params: dict[str, Any],
    *,
    incident_id: str = "inc-42",
    attempt: int = 1,
    dry_run: bool = False,
    timeout_s: float = 10.0,
) -> ActionContext:
    return ActionContext(
        component="trainer",
        labels={"region": "eu"},
        incident_id=incident_id,
        attempt_id=attempt,
        attempt_number=attempt,
        params=strategy.validate(params),
        dry_run=dry_run,
        timeout_s=timeout_s,
        incident_started_at=STARTED,
    )


def calls(kmock) -> list[tuple[str, str, dict[str, str], str | None, Any]]:
    """Each request as (method, path, query, content type, JSON body): what the apiserver saw."""
    return [
        (r.method.value, r.url.path, dict(r.params), r.headers.get("Content-Type"), r.data) for r in kmock
    ]


def restart_body(restarted_at: str, incident: str) -> dict[str, Any]:
    annotations = {"kubectl.kubernetes.io/restartedAt": restarted_at, INCIDENT_ANNOTATION: incident}
    return {"spec": {"template": {"metadata": {"annotations": annotations}}}}


# -- rollout restart -------------------------------------------------------------------------------

RESTART = {"action": "rollout_restart", "namespace": "ml", "name": "trainer"}


async def test_rollout_restart_patches_the_pod_template_annotation(kmock, strategy, deployment):
    result = await strategy.execute(make_ctx(strategy, RESTART))

    assert result.success, result.detail
    assert result.detail == "rollout restart of Deployment ml/trainer requested"
    assert calls(kmock) == [
        ("GET", DEPLOY, {}, None, None),
        ("PATCH", DEPLOY, {}, SMP, restart_body("2024-05-01T10:00:00Z", "inc-42")),
    ]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in kmock)


async def test_second_try_of_the_same_incident_does_not_roll_again(kmock, strategy, deployment):
    first = await strategy.execute(make_ctx(strategy, RESTART, attempt=1))
    again = await strategy.execute(make_ctx(strategy, RESTART, attempt=2))

    assert first.success and first.data["patched"] is True
    assert again.success and again.data["patched"] is False
    assert again.detail == "Deployment ml/trainer already restarted for this incident"
    assert [(m, p) for m, p, *_ in calls(kmock)] == [("GET", DEPLOY), ("PATCH", DEPLOY), ("GET", DEPLOY)]

    # A new incident is a new restart.
    other = await strategy.execute(make_ctx(strategy, RESTART, incident_id="inc-43", attempt=1))
    assert other.success and other.data["patched"] is True
    assert calls(kmock)[-1] == ("PATCH", DEPLOY, {}, SMP, restart_body("2024-05-01T10:00:00Z", "inc-43"))


@pytest.mark.parametrize(("kind", "plural"), [("StatefulSet", "statefulsets"), ("daemonset", "daemonsets")])
async def test_rollout_restart_other_workload_kinds(kmock, strategy, kind, plural):
    kmock.objects[kmock.resource(f"apps/v1/{plural}"), "ml", "db"] = {"metadata": {"name": "db"}}
    result = await strategy.execute(make_ctx(strategy, {**RESTART, "kind": kind, "name": "db"}))

    path = f"/apis/apps/v1/namespaces/ml/{plural}/db"
    assert result.success, result.detail
    assert calls(kmock) == [
        ("GET", path, {}, None, None),
        ("PATCH", path, {}, SMP, restart_body("2024-05-01T10:00:00Z", "inc-42")),
    ]


async def test_dry_run_sends_nothing(kmock, strategy, deployment):
    ctx = make_ctx(strategy, RESTART, dry_run=True)
    for result in (await strategy.execute(ctx), await run_bounded(strategy, ctx)):
        assert result.success and result.data == {"dry_run": True}
        assert result.detail == "dry-run: would rollout restart Deployment ml/trainer"
    assert calls(kmock) == []


# -- scale -----------------------------------------------------------------------------------------


def seed_scale(kmock, replicas: int) -> None:
    kmock.objects[kmock.resource("apps/v1/deployments"), "ml", "trainer"] = {
        "metadata": {"name": "trainer", "namespace": "ml"},
        "spec": {"replicas": replicas},
    }
    kmock[f"get {DEPLOY}/scale"] << {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "trainer", "namespace": "ml"},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas},
    }


SCALE = {"action": "scale", "namespace": "ml", "name": "trainer", "min_replicas": 1, "max_replicas": 5}


@pytest.mark.parametrize(
    ("current", "change", "expected", "detail"),
    [
        (2, {"step": 1}, 3, "Deployment ml/trainer scaled from 2 to 3 replicas"),
        (4, {"step": 3}, 5, "Deployment ml/trainer scaled from 4 to 5 replicas (clamped from 7)"),
        (3, {"replicas": 4}, 4, "Deployment ml/trainer scaled from 3 to 4 replicas"),
        (3, {"replicas": 0}, 1, "Deployment ml/trainer scaled from 3 to 1 replicas (clamped from 0)"),
    ],
)
async def test_scale_reads_then_patches_the_scale_subresource(
    kmock, strategy, current, change, expected, detail
):
    seed_scale(kmock, current)
    result = await strategy.execute(make_ctx(strategy, {**SCALE, **change}))

    assert result.success, result.detail
    assert result.detail == detail
    assert calls(kmock) == [
        ("GET", f"{DEPLOY}/scale", {}, None, None),
        ("PATCH", f"{DEPLOY}/scale", {}, MERGE, {"spec": {"replicas": expected}}),
    ]


@pytest.mark.parametrize(
    ("current", "change", "detail"),
    [
        (5, {"step": 1}, "Deployment ml/trainer not scaled: already at max_replicas (5)"),
        (1, {"step": -1}, "Deployment ml/trainer not scaled: already at min_replicas (1)"),
        (3, {"replicas": 3}, "Deployment ml/trainer not scaled: already at 3 replicas"),
        (
            8,
            {"step": 1},
            ("Deployment ml/trainer not scaled: 8 replicas is outside 1..5; refusing to scale the other way"),
        ),
    ],
)
async def test_scale_never_leaves_the_bounds(kmock, strategy, current, change, detail):
    seed_scale(kmock, current)
    result = await strategy.execute(make_ctx(strategy, {**SCALE, **change}))

    assert not result.success
    assert result.detail == detail
    assert calls(kmock) == [("GET", f"{DEPLOY}/scale", {}, None, None)]


# -- delete pod ------------------------------------------------------------------------------------


def pod(name: str, created: str, ready: bool, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ml", "creationTimestamp": created}
    if terminating:
        meta["deletionTimestamp"] = "2024-05-01T10:00:00Z"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": str(ready)}]}}


async def test_delete_named_pod(kmock, strategy):
    kmock.objects[kmock.resource("v1/pods"), "ml", "trainer-abc"] = pod(
        "trainer-abc", "2024-01-01T00:00:00Z", True
    )
    result = await strategy.execute(
        make_ctx(strategy, {"action": "delete_pod", "namespace": "ml", "pod": "trainer-abc"})
    )

    assert result.success, result.detail
    assert result.detail == "pod ml/trainer-abc deleted"
    assert calls(kmock) == [("DELETE", "/api/v1/namespaces/ml/pods/trainer-abc", {}, None, None)]


async def test_delete_by_selector_picks_the_oldest_not_ready_pod(kmock, strategy):
    pods = [
        pod("p-ready-old", "2024-01-01T00:00:00Z", True),
        pod("p-dying", "2024-01-01T00:00:00Z", False, terminating=True),
        pod("p-unready-new", "2024-03-01T00:00:00Z", False),
        pod("p-unready-old", "2024-02-01T00:00:00Z", False),
    ]
    for p in pods:
        kmock.objects[kmock.resource("v1/pods"), "ml", p["metadata"]["name"]] = p
    kmock["get /api/v1/namespaces/ml/pods"] << {"kind": "PodList", "items": pods}
    params = {"action": "delete_pod", "namespace": "ml", "label_selector": "app=trainer,tier in (gpu)"}
    result = await strategy.execute(make_ctx(strategy, params))

    assert result.success, result.detail
    assert calls(kmock) == [
        ("GET", "/api/v1/namespaces/ml/pods", {"labelSelector": "app=trainer,tier in (gpu)"}, None, None),
        ("DELETE", "/api/v1/namespaces/ml/pods/p-unready-old", {}, None, None),
    ]


async def test_delete_by_selector_without_matches_fails_clearly(kmock, strategy):
    kmock["get /api/v1/namespaces/ml/pods"] << {"kind": "PodList", "items": []}
    result = await strategy.execute(
        make_ctx(strategy, {"action": "delete_pod", "namespace": "ml", "label_selector": "app=x"})
    )

    assert not result.success
    assert result.detail == "no running pod matches 'app=x' in ml"
    assert [m for m, *_ in calls(kmock)] == ["GET"]


# -- apiserver errors and timeouts -----------------------------------------------------------------


async def test_forbidden_is_a_failure_with_the_apiservers_reason(kmock, strategy):
    (
        kmock[f"get {DEPLOY}"]
        << 403
        << {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": 403,
            "reason": "Forbidden",
            "message": (
                'deployments.apps "trainer" is forbidden: User "system:serviceaccount:pg:guard" cannot get'
            ),
        }
    )
    result = await strategy.execute(make_ctx(strategy, RESTART))

    assert not result.success
    assert result.detail.startswith(
        "rollout restart Deployment ml/trainer failed: 403 Forbidden: deployments.apps"
    )
    assert result.data == {"status": 403, "reason": "Forbidden"}
    assert TOKEN not in result.detail
    assert [m for m, *_ in calls(kmock)] == ["GET"]  # no PATCH after a refused read


async def test_missing_workload_is_a_failure(kmock, strategy):
    kmock.resources["apps/v1/deployments"] = {}
    result = await strategy.execute(make_ctx(strategy, RESTART))

    assert not result.success
    assert "failed: 404" in result.detail
    assert result.data["status"] == 404


async def test_missing_pod_is_a_failure(kmock, strategy):
    kmock.resources["v1/pods"] = {}
    result = await strategy.execute(
        make_ctx(strategy, {"action": "delete_pod", "namespace": "ml", "pod": "gone"})
    )

    assert not result.success
    assert result.detail.startswith("delete pod ml/gone failed: 404")


async def test_hanging_apiserver_times_out_as_a_failure(kmock, strategy):
    kmock[f"get {DEPLOY}"] << (lambda: asyncio.sleep(30))
    started = time.monotonic()
    result = await strategy.execute(make_ctx(strategy, {**RESTART, "request_timeout_s": 0.5}))
    elapsed = time.monotonic() - started

    assert not result.success
    assert (
        result.detail
        == "rollout restart Deployment ml/trainer failed: Timeout: GET " + DEPLOY + ": no answer within 0.5 s"
    )
    assert elapsed < 5


async def test_attempt_deadline_bounds_the_whole_action(kmock, strategy):
    kmock[f"get {DEPLOY}"] << (lambda: asyncio.sleep(30))
    started = time.monotonic()
    result = await run_bounded(strategy, make_ctx(strategy, RESTART, timeout_s=0.3))

    assert not result.success
    assert "timed out after 0.3 s" in result.detail
    assert time.monotonic() - started < 5


async def test_unreachable_apiserver_is_a_failure():
    # A port nobody listens on: bind, read the port, close.
    port = free_port()
    strategy = KubernetesStrategy(
        lambda p: KubeClient(KubeConfig(server=f"http://127.0.0.1:{port}"), timeout_s=2)
    )
    result = await strategy.execute(make_ctx(strategy, RESTART))
    assert not result.success
    assert "ConnectionError" in result.detail


async def test_oversized_answer_is_refused(kmock):
    kmock["get /big"] << {"items": ["x" * 1000] * 100}
    async with KubeClient(KubeConfig(server=str(kmock.url).rstrip("/")), max_response_bytes=10_000) as kube:
        with pytest.raises(KubeError) as err:
            await kube.get("/big")
    assert err.value.reason == "ResponseTooLarge"


# -- connection settings ---------------------------------------------------------------------------


def write_kubeconfig(path: Path, server: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "other",
        "clusters": [
            {"name": "local", "cluster": {"server": server}},
            {"name": "elsewhere", "cluster": {"server": "https://192.0.2.1:6443"}},
        ],
        "users": [
            {"name": "guard", "user": {"token": "kc-token"}},
            {"name": "someone", "user": {"token": "not-this-one"}},
        ],
        "contexts": [
            {"name": "kmock", "context": {"cluster": "local", "user": "guard", "namespace": "ml"}},
            {"name": "other", "context": {"cluster": "elsewhere", "user": "someone"}},
        ],
    }
    path.write_text(yaml.safe_dump(doc))


async def test_kubeconfig_named_context_reaches_its_server_with_its_token(kmock, tmp_path, deployment):
    kubeconfig = tmp_path / "config"
    write_kubeconfig(kubeconfig, str(kmock.url).rstrip("/"))
    strategy = KubernetesStrategy()  # the default factory, as in production
    params = {**RESTART, "kubeconfig": str(kubeconfig), "context": "kmock"}
    result = await strategy.execute(make_ctx(strategy, params))

    assert result.success, result.detail
    assert [(m, p) for m, p, *_ in calls(kmock)] == [("GET", DEPLOY), ("PATCH", DEPLOY)]
    assert {r.headers["Authorization"] for r in kmock} == {"Bearer kc-token"}


def test_kubeconfig_current_context_and_inline_credentials(tmp_path):
    kubeconfig = tmp_path / "config"
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1")
    current = load_kubeconfig(kubeconfig)
    assert (current.server, current.token, current.namespace) == (
        "https://192.0.2.1:6443",
        "not-this-one",
        "default",
    )

    doc = yaml.safe_load(kubeconfig.read_text())
    doc["clusters"][0]["cluster"].update(
        {"certificate-authority": "ca.pem", "insecure-skip-tls-verify": True}
    )
    doc["users"][0]["user"] = {
        "client-certificate-data": base64.b64encode(b"CERT").decode(),
        "client-key": "/abs/key.pem",
    }
    kubeconfig.write_text(yaml.safe_dump(doc))
    named = load_kubeconfig(kubeconfig, context="kmock")
    assert named.ca_file == str(tmp_path / "ca.pem")  # relative to the kubeconfig, like kubectl
    assert named.insecure_skip_tls_verify is True
    assert named.client_cert_data == b"CERT" and named.client_key_file == "/abs/key.pem"
    assert named.token is None and named.namespace == "ml"
    assert "kc-token" not in repr(named)


def test_kubeconfig_errors_are_clear(tmp_path):
    from app.outbound.kube import KubeConfigError

    kubeconfig = tmp_path / "config"
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1")
    with pytest.raises(KubeConfigError, match="context 'nope' not found"):
        load_kubeconfig(kubeconfig, context="nope")
    with pytest.raises(KubeConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(tmp_path / "missing")


async def test_incluster_service_account_is_used_and_rotated_token_reread(kmock, tmp_path, deployment):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token-1\n")
    (sa / "namespace").write_text("pipeline-guard")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_incluster(sa_dir=sa, environ=env)
    assert config.server == "https://10.0.0.1:443"
    assert config.token_file == str(sa / "token") and config.ca_file is None
    assert config.namespace == "pipeline-guard"

    # Same credentials, pointed at the emulator (plain http on loopback) to see what is sent.
    from dataclasses import replace

    async with KubeClient(replace(config, server=str(kmock.url).rstrip("/"))) as kube:
        await kube.get(DEPLOY)
        (sa / "token").write_text("sa-token-2\n")
        kube._token_read_at = float("-inf")  # as if a minute had passed
        await kube.get(DEPLOY)
    assert [r.headers["Authorization"] for r in kmock] == ["Bearer sa-token-1", "Bearer sa-token-2"]


def test_incluster_outside_a_cluster_fails_clearly(tmp_path):
    from app.outbound.kube import KubeConfigError

    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_incluster(sa_dir=tmp_path, environ={})
    with pytest.raises(KubeConfigError, match="token not found"):
        load_incluster(
            sa_dir=tmp_path, environ={"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}
        )


async def test_default_factory_outside_a_cluster_is_a_failure_result(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    strategy = KubernetesStrategy()
    result = await strategy.execute(make_ctx(strategy, RESTART))
    assert not result.success
    assert result.detail.startswith("kubernetes connection settings unusable: not in a cluster")


# -- parameter validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"action": "reboot"}, "action: must be one of rollout_restart, scale, delete_pod"),
        ({**RESTART, "replicas": 3}, "replicas: unknown parameter for action rollout_restart"),
        ({**RESTART, "name": "../../secrets"}, "name: '../../secrets' is not a valid Kubernetes name"),
        ({**RESTART, "namespace": None}, "namespace: is required"),
        ({**RESTART, "kind": "CronJob"}, "kind: must be Deployment, StatefulSet or DaemonSet"),
        ({**SCALE, "kind": "DaemonSet", "step": 1}, "kind: a DaemonSet cannot be scaled"),
        ({**SCALE}, "replicas: give exactly one of replicas (absolute) or step (relative)"),
        (
            {**SCALE, "step": 1, "replicas": 2},
            "replicas: give exactly one of replicas (absolute) or step (relative)",
        ),
        ({**SCALE, "step": 0}, "step: must not be 0"),
        ({**SCALE, "step": True}, "step: must be an integer"),
        (
            {"action": "scale", "namespace": "ml", "name": "t", "step": 1},
            "max_replicas: is required for scale",
        ),
        ({**SCALE, "step": 1, "min_replicas": 6}, "max_replicas: must be >= min_replicas"),
        ({"action": "delete_pod", "namespace": "ml"}, "pod: give exactly one of pod or label_selector"),
        ({**RESTART, "request_timeout_s": 0}, "request_timeout_s: must be a number between 0.1 and 300"),
    ],
)
def test_validate_rejects_with_field_and_reason(params, message):
    with pytest.raises(StrategyConfigError) as err:
        KubernetesStrategy().validate(params)
    assert str(err.value) == message


def test_validate_fills_defaults_and_describes():
    strategy = KubernetesStrategy()
    params = strategy.validate(
        {"action": "scale", "namespace": "ml", "name": "t", "step": 2, "max_replicas": 4}
    )
    assert params == {
        "action": "scale",
        "kind": "Deployment",
        "namespace": "ml",
        "name": "t",
        "kubeconfig": None,
        "context": None,
        "request_timeout_s": 10.0,
        "replicas": None,
        "step": 2,
        "min_replicas": 1,
        "max_replicas": 4,
    }
    assert strategy.describe(params) == "scale Deployment ml/t by +2 replicas (bounded to 1..4)"
    assert default_client_factory  # the production factory is importable for the registry


async def test_an_apiserver_answer_that_arrived_while_the_guard_was_blocked_is_read(http_thread_target):
    """The apiserver (a thread of its own) answers in 50 ms; the guard's loop is blocked from the moment
    it has the request until past the client's 0.3 s timeout. The answer is read: no "Timeout" (a
    rollout restart reported failed would be retried, a second restart)."""
    import asyncio

    from tests.support.late_guard import block_the_loop_once_the_target_has_the_request

    config = KubeConfig(server=f"http://127.0.0.1:{http_thread_target.port}")
    async with KubeClient(config, timeout_s=0.3) as kube:
        blocker = asyncio.create_task(block_the_loop_once_the_target_has_the_request(http_thread_target))
        answer = await kube.get("/apis/apps/v1/namespaces/shop/deployments/web")
        await blocker
    assert answer == {}
