"""Every API call the clients make, described once as data (method, path, query, body).

``app/client/operations.py`` gives ``GuardClient`` and ``AsyncGuardClient`` one typed method per
function here, of the same name and signature (sync or async), so the two can never disagree about a
path or a parameter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.client.core import (
    API,
    clean_params,
    duration_seconds,
    encode_instant,
    encode_timestamp,
    label_params,
    segment,
    since_timestamp,
)


@dataclass
class Call:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    json: Any = None
    data: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authenticated: bool = True


When = datetime | str | None


# --- metrics ----------------------------------------------------------------------------------


def record_batch(points: list[Any], *, series_shape: bool = True) -> Call:
    """POST a chunk of ``MetricPoint`` (at most the batch size): in the series shape, the points
    grouped per series (each series' in their order), when every point has its timestamp (a point
    without one is stamped by the guard, which only the point shape says); else as points."""
    if series_shape and all(p.timestamp is not None for p in points):
        return Call("POST", f"{API}/metrics/batch", json={"series": series_of(points)})
    return Call("POST", f"{API}/metrics/batch", json={"points": [p.as_json() for p in points]})


def series_of(points: list[Any]) -> list[dict[str, Any]]:
    """``MetricPoint``s as series-shape entries, in the order each series first appears."""
    entries: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
    for p in points:
        key = (p.component, p.metric_name, tuple(sorted(p.labels.items())))
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = {
                "component": p.component,
                "metric_name": p.metric_name,
                "labels": p.labels,
                "timestamps": [],
                "values": [],
            }
        entry["timestamps"].append(p.timestamp)
        entry["values"].append(p.value)
    return list(entries.values())


def get_metrics(
    component: str | None = None,
    metric_name: str | None = None,
    start_time: When = None,
    end_time: When = None,
    labels: Mapping[str, str] | None = None,
    limit: int = 100,
) -> Call:
    """Metric points, newest first (``GET /api/v1/metrics``)."""
    params = clean_params(
        {
            "component": component,
            "metric_name": metric_name,
            "start_time": encode_instant(start_time),
            "end_time": encode_instant(end_time),
            "limit": limit,
        }
    ) + label_params(labels)
    return Call("GET", f"{API}/metrics", params)


def get_metric_summary(
    component: str, metric_name: str, since: str | float | None = None, start: When = None, end: When = None
) -> Call:
    """count/min/max/mean/percentiles of one series (``since`` like ``1h`` or seconds, or
    ``start``/``end``)."""
    return Call(
        "GET",
        f"{API}/metrics/summary",
        clean_params(
            {
                "component": component,
                "metric_name": metric_name,
                "since": duration_seconds(since) if since is not None else None,
                "start": encode_instant(start),
                "end": encode_instant(end),
            }
        ),
    )


def get_latest_metrics(component: str | None = None, names: list[str] | None = None) -> Call:
    """The latest value of each series (``GET /api/v1/metrics/latest``)."""
    return Call(
        "GET",
        f"{API}/metrics/latest",
        clean_params({"component": component, "names": ",".join(names) if names else None}),
    )


def get_baselines(component: str | None = None, metric_name: str | None = None) -> Call:
    """The learned baseline of each series (``GET /api/v1/metrics/baselines``)."""
    return Call(
        "GET", f"{API}/metrics/baselines", clean_params({"component": component, "metric_name": metric_name})
    )


# --- status and components --------------------------------------------------------------------


def get_system_status() -> Call:
    """Overall health and each component's status, last check, open incident (``GET /api/v1/status``)."""
    return Call("GET", f"{API}/status")


def list_components(
    *,
    region: str | None = None,
    status: str | None = None,
    enabled: bool | None = None,
    labels: Mapping[str, str] | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> Call:
    params = clean_params(
        {"region": region, "status": status, "enabled": enabled, "limit": limit, "offset": offset}
    )
    return Call("GET", f"{API}/components", params + label_params(labels, "label"))


def get_component(name: str) -> Call:
    return Call("GET", f"{API}/components/{segment(name)}")


def create_component(spec: Mapping[str, Any]) -> Call:
    """Register a component: ``{"name", "description", "endpoint", "critical", "labels", "check", ...}``."""
    return Call("POST", f"{API}/components", json=dict(spec))


def update_component(name: str, changes: Mapping[str, Any]) -> Call:
    return Call("PATCH", f"{API}/components/{segment(name)}", json=dict(changes))


def enable_component(name: str) -> Call:
    return Call("PATCH", f"{API}/components/{segment(name)}", json={"enabled": True})


def disable_component(name: str) -> Call:
    return Call("PATCH", f"{API}/components/{segment(name)}", json={"enabled": False})


def delete_component(name: str) -> Call:
    return Call("DELETE", f"{API}/components/{segment(name)}")


# --- alerts and silences ----------------------------------------------------------------------


def list_alerts(
    *,
    state: str | None = None,
    component: str | None = None,
    severity: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Call:
    """Alerts, newest first; ``state``: firing, acknowledged, silenced or resolved (default: not resolved)."""
    return Call(
        "GET",
        f"{API}/alerts",
        clean_params(
            {"status": state, "component": component, "severity": severity, "limit": limit, "offset": offset}
        ),
    )


def get_alert(alert_id: int | str) -> Call:
    return Call("GET", f"{API}/alerts/{segment(alert_id)}")


def ack_alert(alert_id: int | str, until: When = None, comment: str | None = None) -> Call:
    body = {
        k: v
        for k, v in {
            "until": encode_instant(until),
            "comment": comment,
        }.items()
        if v is not None
    }
    return Call("POST", f"{API}/alerts/{segment(alert_id)}/ack", json=body)


def resolve_alert(alert_id: int | str, comment: str | None = None) -> Call:
    """Resolve an alert; ``comment`` is recorded as what fixed it."""
    return Call(
        "POST",
        f"{API}/alerts/{segment(alert_id)}/resolve",
        json={"resolution_action": comment} if comment else {},
    )


def list_silences(*, include_expired: bool = False, limit: int = 100, offset: int = 0) -> Call:
    return Call(
        "GET",
        f"{API}/silences",
        clean_params({"include_expired": include_expired, "limit": limit, "offset": offset}),
    )


def create_silence(
    spec: Mapping[str, Any] | None = None,
    *,
    component: str | None = None,
    labels: Mapping[str, str] | None = None,
    duration: str | float | None = None,
    comment: str = "",
) -> Call:
    """Mute notifications and healing: ``{"component", "labels", "starts_at", "ends_at", "comment"}`` as
    the API takes it, or ``component=``/``labels=``/``duration="30m"``/``comment=`` (starting now)."""
    if spec is None:
        if duration is None:
            raise ValueError("give a spec or a duration")
        now = time.time()
        spec = {
            "component": component,
            "labels": dict(labels or {}),
            "starts_at": encode_timestamp(now),
            "ends_at": encode_timestamp(now + duration_seconds(duration)),
            "comment": comment,
        }
    return Call("POST", f"{API}/silences", json={k: v for k, v in dict(spec).items() if v is not None})


def expire_silence(silence_id: int | str) -> Call:
    return Call("DELETE", f"{API}/silences/{segment(silence_id)}")


# --- notification channels (admin) ------------------------------------------------------------


def list_channels(*, limit: int = 100, offset: int = 0) -> Call:
    return Call("GET", f"{API}/channels", clean_params({"limit": limit, "offset": offset}))


def create_channel(spec: Mapping[str, Any]) -> Call:
    """``{"name", "kind": "slack"|"webhook", "config": {"url", ...}, "severities", "matchers", ...}``."""
    return Call("POST", f"{API}/channels", json=dict(spec))


def get_channel(channel_id: int | str) -> Call:
    return Call("GET", f"{API}/channels/{segment(channel_id)}")


def update_channel(channel_id: int | str, changes: Mapping[str, Any]) -> Call:
    return Call("PATCH", f"{API}/channels/{segment(channel_id)}", json=dict(changes))


def delete_channel(channel_id: int | str) -> Call:
    return Call("DELETE", f"{API}/channels/{segment(channel_id)}")


def test_channel(channel_id: int | str) -> Call:
    """Send a test message now; returns whether it was delivered."""
    return Call("POST", f"{API}/channels/{segment(channel_id)}/test")


# --- healing ----------------------------------------------------------------------------------


def heal(component: str, strategy: str | None = None, reason: str | None = None) -> Call:
    """Trigger healing now (``POST /api/v1/healing/{component}``), optionally with one strategy."""
    body = {k: v for k, v in {"strategy": strategy, "reason": reason}.items() if v is not None}
    return Call("POST", f"{API}/healing/{segment(component)}", json=body)


def list_healing_attempts(*, component: str | None = None, limit: int = 100, offset: int = 0) -> Call:
    return Call(
        "GET",
        f"{API}/healing/attempts",
        clean_params({"component": component, "limit": limit, "offset": offset}),
    )


# --- users, audit, auth -----------------------------------------------------------------------


def list_users(*, limit: int = 1000, offset: int = 0) -> Call:
    return Call("GET", f"{API}/users", clean_params({"limit": limit, "offset": offset}))


def create_user(username: str, password: str, role: str = "viewer") -> Call:
    return Call("POST", f"{API}/users", json={"username": username, "password": password, "role": role})


def update_user(username: str, *, role: str | None = None, disabled: bool | None = None) -> Call:
    body = {k: v for k, v in {"role": role, "disabled": disabled}.items() if v is not None}
    return Call("PATCH", f"{API}/users/{segment(username)}", json=body)


def list_audit(
    *,
    actor: str | None = None,
    action: str | None = None,
    since: When | float = None,
    limit: int = 100,
    offset: int = 0,
) -> Call:
    """Who did what (admin). ``since``: an ISO time, a datetime or a duration back from now (``24h``)."""
    return Call(
        "GET",
        f"{API}/audit",
        clean_params(
            {
                "username": actor,
                "action": action,
                "since": since_timestamp(since),
                "limit": limit,
                "offset": offset,
            }
        ),
    )


def me() -> Call:
    return Call("GET", f"{API}/auth/me")


def logout() -> Call:
    return Call("POST", f"{API}/auth/logout")


OPERATIONS = [
    get_metrics,
    get_metric_summary,
    get_latest_metrics,
    get_baselines,
    get_system_status,
    list_components,
    get_component,
    create_component,
    update_component,
    enable_component,
    disable_component,
    delete_component,
    list_alerts,
    get_alert,
    ack_alert,
    resolve_alert,
    list_silences,
    create_silence,
    expire_silence,
    list_channels,
    create_channel,
    get_channel,
    update_channel,
    delete_channel,
    test_channel,
    heal,
    list_healing_attempts,
    list_users,
    create_user,
    update_user,
    list_audit,
    me,
    logout,
]
