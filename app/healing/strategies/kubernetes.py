"""Kubernetes recovery: rollout restart, bounded scale, delete one pod.

Safety rules, because a healer must never make things worse:
- names are checked against Kubernetes' own syntax before they go into a URL path;
- scaling is always bounded by ``min_replicas``/``max_replicas`` and reports "already at the bound"
  as a failure, so the engine moves on instead of believing it healed something;
- a rollout restart is idempotent per incident: the annotation values derive from the incident, and a
  workload already carrying them is not patched again (a retry or a restarted guard does not roll the
  pods a second time).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC
from typing import Any, ClassVar

from app.core.deadlines import lenient_timeout
from app.healing.strategies.base import ActionContext, ActionResult, Strategy, StrategyConfigError
from app.outbound.kube import (
    KubeClient,
    KubeConfigError,
    KubeError,
    load_incluster,
    load_kubeconfig,
    workload_path,
)

INCIDENT_ANNOTATION = "pipeline-guard.io/incident"
ACTIONS = ("rollout_restart", "scale", "delete_pod")
KINDS = {"deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet"}
_COMMON = {"action", "kind", "namespace", "kubeconfig", "context", "request_timeout_s"}
_ALLOWED = {
    "rollout_restart": _COMMON | {"name"},
    "scale": _COMMON | {"name", "replicas", "step", "min_replicas", "max_replicas"},
    "delete_pod": _COMMON | {"pod", "label_selector"},
}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")

ClientFactory = Callable[[dict[str, Any]], KubeClient]


def default_client_factory(params: dict[str, Any]) -> KubeClient:
    """A kubeconfig when the policy names one, else the pod's own service account."""
    if params.get("kubeconfig"):
        config = load_kubeconfig(params["kubeconfig"], params.get("context"))
    else:
        config = load_incluster()
    return KubeClient(config, timeout_s=params["request_timeout_s"])


class KubernetesStrategy(Strategy):
    kind: ClassVar[str] = "kubernetes"

    def __init__(self, client_factory: ClientFactory | None = None) -> None:
        # Injectable so tests (and other deployments) can point at any apiserver URL.
        self._client_factory = client_factory or default_client_factory

    # -- configuration -------------------------------------------------------------------------

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params, dict):
            raise StrategyConfigError("params", "must be a mapping")
        action = params.get("action")
        if action not in ACTIONS:
            raise StrategyConfigError("action", f"must be one of {', '.join(ACTIONS)}")
        unknown = sorted(set(params) - _ALLOWED[action])
        if unknown:
            raise StrategyConfigError(unknown[0], f"unknown parameter for action {action}")
        kind = KINDS.get(str(params.get("kind", "Deployment")).lower())
        if kind is None:
            raise StrategyConfigError("kind", "must be Deployment, StatefulSet or DaemonSet")
        out: dict[str, Any] = {
            "action": action,
            "kind": kind,
            "namespace": _name(params, "namespace", _DNS_LABEL),
            "kubeconfig": _optional_str(params, "kubeconfig"),
            "context": _optional_str(params, "context"),
            "request_timeout_s": _number(params, "request_timeout_s", 10.0, 0.1, 300.0),
        }
        if action == "delete_pod":
            out.update(_validate_delete_pod(params))
        else:
            out["name"] = _name(params, "name", _DNS_SUBDOMAIN)
        if action == "scale":
            if kind == "DaemonSet":
                raise StrategyConfigError("kind", "a DaemonSet cannot be scaled")
            out.update(_validate_scale(params))
        return out

    def describe(self, params: dict[str, Any]) -> str:
        where = f"{params['kind']} {params['namespace']}/{params.get('name')}"
        if params["action"] == "rollout_restart":
            return f"rollout restart {where}"
        if params["action"] == "scale":
            change = (
                f"to {params['replicas']} replicas"
                if params.get("replicas") is not None
                else f"by {params['step']:+d} replicas"
            )
            return f"scale {where} {change} (bounded to {params['min_replicas']}..{params['max_replicas']})"
        if params.get("pod"):
            return f"delete pod {params['namespace']}/{params['pod']}"
        return (
            f"delete one pod matching {params['label_selector']!r} in {params['namespace']}"
            " (the oldest not-ready one, else the first)"
        )

    # -- execution -----------------------------------------------------------------------------

    async def execute(self, ctx: ActionContext) -> ActionResult:
        params = ctx.params
        if ctx.dry_run:
            return ActionResult(True, f"dry-run: would {self.describe(params)}", data={"dry_run": True})
        try:
            client = self._client_factory(params)
        except (KubeConfigError, OSError, ValueError) as exc:
            return ActionResult(False, f"kubernetes connection settings unusable: {exc}")
        try:
            # The engine bounds us too (run_bounded); this keeps execute() safe when called alone.
            async with lenient_timeout(ctx.timeout_s), client:
                if params["action"] == "rollout_restart":
                    return await self._rollout_restart(client, ctx)
                if params["action"] == "scale":
                    return await self._scale(client, params)
                return await self._delete_pod(client, params)
        except KubeError as exc:
            return ActionResult(False, f"{self.describe(params)} failed: {exc}", data=_error_data(exc))
        except TimeoutError:
            return ActionResult(False, f"{self.describe(params)} timed out after {ctx.timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - the strategy contract is "report, never raise"
            return ActionResult(False, f"{self.describe(params)} failed: {type(exc).__name__}")

    async def _rollout_restart(self, client: KubeClient, ctx: ActionContext) -> ActionResult:
        p = ctx.params
        restarted_at = restart_marker(ctx)
        workload = await client.get(workload_path(p["kind"], p["namespace"], p["name"]))
        template_meta = ((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}
        current = template_meta.get("annotations") or {}
        data = {"action": "rollout_restart", "restarted_at": restarted_at, "incident_id": ctx.incident_id}
        if current.get(INCIDENT_ANNOTATION) == ctx.incident_id:
            return ActionResult(
                True,
                f"{p['kind']} {p['namespace']}/{p['name']} already restarted for this incident",
                data={**data, "patched": False},
            )
        await client.rollout_restart(
            p["kind"], p["namespace"], p["name"], restarted_at, {INCIDENT_ANNOTATION: ctx.incident_id}
        )
        return ActionResult(
            True,
            f"rollout restart of {p['kind']} {p['namespace']}/{p['name']} requested",
            data={**data, "patched": True},
        )

    async def _scale(self, client: KubeClient, p: dict[str, Any]) -> ActionResult:
        where = f"{p['kind']} {p['namespace']}/{p['name']}"
        current = await client.get_scale(p["kind"], p["namespace"], p["name"])
        wanted = p["replicas"] if p.get("replicas") is not None else current + p["step"]
        target = min(max(wanted, p["min_replicas"]), p["max_replicas"])
        data = {"action": "scale", "from": current, "wanted": wanted, "to": target}
        if target == current:
            # target only differs from wanted by clamping, so the direction says which bound held.
            if wanted > current:
                why = f"already at max_replicas ({p['max_replicas']})"
            elif wanted < current:
                why = f"already at min_replicas ({p['min_replicas']})"
            else:
                why = f"already at {current} replicas"
            return ActionResult(False, f"{where} not scaled: {why}", data={**data, "patched": False})
        step = p.get("step")
        if step is not None and (target - current) * step < 0:
            # The workload sits outside the bounds (scaled by hand); a heal must not reverse it.
            return ActionResult(
                False,
                f"{where} not scaled: {current} replicas is outside "
                f"{p['min_replicas']}..{p['max_replicas']}; refusing to scale the other way",
                data={**data, "patched": False},
            )
        await client.scale(p["kind"], p["namespace"], p["name"], target, current=current)
        clamped = f" (clamped from {wanted})" if target != wanted else ""
        return ActionResult(
            True,
            f"{where} scaled from {current} to {target} replicas{clamped}",
            data={**data, "patched": True, "clamped": target != wanted},
        )

    async def _delete_pod(self, client: KubeClient, p: dict[str, Any]) -> ActionResult:
        ns = p["namespace"]
        pod = p.get("pod")
        if pod is None:
            pods = await client.list_pods(ns, p["label_selector"])
            pod = pick_pod(pods)
            if pod is None:
                return ActionResult(False, f"no running pod matches {p['label_selector']!r} in {ns}")
        await client.delete_pod(ns, pod)
        return ActionResult(True, f"pod {ns}/{pod} deleted", data={"action": "delete_pod", "pod": pod})


def restart_marker(ctx: ActionContext) -> str:
    """The restartedAt value for this incident: the same on every try, different per incident.

    An RFC 3339 time (what kubectl writes, and what dashboards show) when the incident's start is
    known; the incident annotation next to it is what makes the value unique per incident.
    """
    if ctx.incident_started_at is not None:
        started = ctx.incident_started_at
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        return started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"pipeline-guard/{ctx.incident_id}"


def pick_pod(pods: list[dict[str, Any]]) -> str | None:
    """The oldest pod that is not Ready, else the first pod; pods already terminating are skipped."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    if not live:
        return None
    not_ready = [p for p in live if not _is_ready(p)]
    if not_ready:
        # RFC 3339 UTC timestamps sort correctly as strings; a pod without one sorts last.
        chosen = min(not_ready, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "~")
    else:
        chosen = live[0]
    return (chosen.get("metadata") or {}).get("name")


def _is_ready(pod: dict[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def _error_data(exc: KubeError) -> dict[str, Any]:
    return {"status": exc.status, "reason": exc.reason}


# -- parameter helpers -------------------------------------------------------------------------


def _name(params: dict[str, Any], key: str, pattern: re.Pattern[str]) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise StrategyConfigError(key, "is required")
    if not pattern.match(value):
        raise StrategyConfigError(key, f"{value!r} is not a valid Kubernetes name")
    return value


def _optional_str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise StrategyConfigError(key, "must be a non-empty string")
    return value


def _int(params: dict[str, Any], key: str, default: int | None, minimum: int | None = None) -> int | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise StrategyConfigError(key, "must be an integer")
    if minimum is not None and value < minimum:
        raise StrategyConfigError(key, f"must be >= {minimum}")
    return value


def _number(params: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise StrategyConfigError(key, f"must be a number between {low:g} and {high:g}")
    return float(value)


def _validate_scale(params: dict[str, Any]) -> dict[str, Any]:
    replicas = _int(params, "replicas", None, 0)
    step = _int(params, "step", None)
    if (replicas is None) == (step is None):
        raise StrategyConfigError("replicas", "give exactly one of replicas (absolute) or step (relative)")
    if step == 0:
        raise StrategyConfigError("step", "must not be 0")
    # Scaling to zero is an outage, not a heal: it needs an explicit min_replicas: 0.
    min_replicas = _int(params, "min_replicas", 1, 0)
    max_replicas = _int(params, "max_replicas", None, 1)
    if max_replicas is None:
        raise StrategyConfigError("max_replicas", "is required for scale")
    assert min_replicas is not None
    if max_replicas < min_replicas:
        raise StrategyConfigError("max_replicas", "must be >= min_replicas")
    return {"replicas": replicas, "step": step, "min_replicas": min_replicas, "max_replicas": max_replicas}


def _validate_delete_pod(params: dict[str, Any]) -> dict[str, Any]:
    pod, selector = params.get("pod"), params.get("label_selector")
    if (pod is None) == (selector is None):
        raise StrategyConfigError("pod", "give exactly one of pod or label_selector")
    if pod is not None:
        return {"pod": _name(params, "pod", _DNS_SUBDOMAIN), "label_selector": None}
    if not isinstance(selector, str) or not selector.strip() or len(selector) > 1024:
        raise StrategyConfigError("label_selector", "must be a non-empty selector of at most 1024 chars")
    return {"pod": None, "label_selector": selector.strip()}
