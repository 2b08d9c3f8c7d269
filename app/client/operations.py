"""The API methods both clients offer, written once as plain typed methods.

Editors and type checkers see every method with its parameters and its docstring, and the sync and
async clients cannot disagree: each method here hands the matching request builder of
``app/client/calls.py`` and its arguments to ``_invoke``, which the sync client implements as a
blocking call and the async client as a coroutine. ``R`` is what a method returns: ``Any`` for
``GuardClient``, an awaitable of ``Any`` for ``AsyncGuardClient``.

Each signature repeats its builder's; ``tests/client/test_operations.py`` fails when the two drift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from app.client import calls
from app.client.calls import Call, When

R = TypeVar("R")
P = ParamSpec("P")


class Operations(Generic[R]):
    """Every API call of the SDK; the clients supply ``_invoke``."""

    def _invoke(self, build: Callable[P, Call], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Build the call (a bad argument is reported like any other failure), send it, return its body."""
        raise NotImplementedError

    # --- metrics ------------------------------------------------------------------------------
    def get_metrics(
        self,
        component: str | None = None,
        metric_name: str | None = None,
        start_time: When = None,
        end_time: When = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 100,
    ) -> R:
        """Metric points, newest first (``GET /api/v1/metrics``)."""
        return self._invoke(calls.get_metrics, component, metric_name, start_time, end_time, labels, limit)

    def get_metric_summary(
        self,
        component: str,
        metric_name: str,
        since: str | float | None = None,
        start: When = None,
        end: When = None,
    ) -> R:
        """count/min/max/mean/percentiles of one series (``since`` like ``1h`` or seconds, or
        ``start``/``end``)."""
        return self._invoke(calls.get_metric_summary, component, metric_name, since, start, end)

    def get_latest_metrics(self, component: str | None = None, names: list[str] | None = None) -> R:
        """The latest value of each series (``GET /api/v1/metrics/latest``)."""
        return self._invoke(calls.get_latest_metrics, component, names)

    def get_baselines(self, component: str | None = None, metric_name: str | None = None) -> R:
        """The learned baseline of each series (``GET /api/v1/metrics/baselines``)."""
        return self._invoke(calls.get_baselines, component, metric_name)

    # --- status and components ----------------------------------------------------------------
    def get_system_status(self) -> R:
        """Overall health and each component's status, last check, open incident (``GET /api/v1/status``)."""
        return self._invoke(calls.get_system_status)

    def list_components(
        self,
        *,
        region: str | None = None,
        status: str | None = None,
        enabled: bool | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> R:
        """A page of components (``{"items": [...], ...}``), filtered by region, status, enabled or labels."""
        return self._invoke(
            calls.list_components,
            region=region,
            status=status,
            enabled=enabled,
            labels=labels,
            limit=limit,
            offset=offset,
        )

    def get_component(self, name: str) -> R:
        """One component: its spec and current state."""
        return self._invoke(calls.get_component, name)

    def create_component(self, spec: Mapping[str, Any]) -> R:
        """Register a component:
        ``{"name", "description", "endpoint", "critical", "labels", "check", ...}``."""
        return self._invoke(calls.create_component, spec)

    def update_component(self, name: str, changes: Mapping[str, Any]) -> R:
        """Change some fields of a component (``PATCH``)."""
        return self._invoke(calls.update_component, name, changes)

    def enable_component(self, name: str) -> R:
        """Check (and heal) the component again."""
        return self._invoke(calls.enable_component, name)

    def disable_component(self, name: str) -> R:
        """Stop checking (and healing) the component; it stays registered."""
        return self._invoke(calls.disable_component, name)

    def delete_component(self, name: str) -> R:
        """Remove the component."""
        return self._invoke(calls.delete_component, name)

    # --- alerts and silences ------------------------------------------------------------------
    def list_alerts(
        self,
        *,
        state: str | None = None,
        component: str | None = None,
        severity: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> R:
        """Alerts, newest first; ``state``: firing, acknowledged, silenced or resolved (default: not
        resolved)."""
        return self._invoke(
            calls.list_alerts, state=state, component=component, severity=severity, limit=limit, offset=offset
        )

    def get_alert(self, alert_id: int | str) -> R:
        """One alert."""
        return self._invoke(calls.get_alert, alert_id)

    def ack_alert(self, alert_id: int | str, until: When = None, comment: str | None = None) -> R:
        """Acknowledge an alert (until a time, when given), with an optional comment."""
        return self._invoke(calls.ack_alert, alert_id, until, comment)

    def resolve_alert(self, alert_id: int | str, comment: str | None = None) -> R:
        """Resolve an alert; ``comment`` is recorded as what fixed it."""
        return self._invoke(calls.resolve_alert, alert_id, comment)

    def list_silences(self, *, include_expired: bool = False, limit: int = 100, offset: int = 0) -> R:
        """Active silences (and expired ones with ``include_expired=True``)."""
        return self._invoke(calls.list_silences, include_expired=include_expired, limit=limit, offset=offset)

    def create_silence(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        component: str | None = None,
        labels: Mapping[str, str] | None = None,
        duration: str | float | None = None,
        comment: str = "",
    ) -> R:
        """Mute notifications and healing: ``{"component", "labels", "starts_at", "ends_at", "comment"}`` as
        the API takes it, or ``component=``/``labels=``/``duration="30m"``/``comment=`` (starting now)."""
        return self._invoke(
            calls.create_silence, spec, component=component, labels=labels, duration=duration, comment=comment
        )

    def expire_silence(self, silence_id: int | str) -> R:
        """End a silence now."""
        return self._invoke(calls.expire_silence, silence_id)

    # --- notification channels (admin) --------------------------------------------------------
    def list_channels(self, *, limit: int = 100, offset: int = 0) -> R:
        """A page of notification channels."""
        return self._invoke(calls.list_channels, limit=limit, offset=offset)

    def create_channel(self, spec: Mapping[str, Any]) -> R:
        """``{"name", "kind": "slack"|"webhook", "config": {"url", ...}, "severities", "matchers", ...}``."""
        return self._invoke(calls.create_channel, spec)

    def get_channel(self, channel_id: int | str) -> R:
        """One channel (secrets masked)."""
        return self._invoke(calls.get_channel, channel_id)

    def update_channel(self, channel_id: int | str, changes: Mapping[str, Any]) -> R:
        """Change some fields of a channel (``PATCH``)."""
        return self._invoke(calls.update_channel, channel_id, changes)

    def delete_channel(self, channel_id: int | str) -> R:
        """Remove a channel."""
        return self._invoke(calls.delete_channel, channel_id)

    def test_channel(self, channel_id: int | str) -> R:
        """Send a test message now; returns whether it was delivered."""
        return self._invoke(calls.test_channel, channel_id)

    # --- healing ------------------------------------------------------------------------------
    def heal(self, component: str, strategy: str | None = None, reason: str | None = None) -> R:
        """Trigger healing now (``POST /api/v1/healing/{component}``), optionally with one strategy."""
        return self._invoke(calls.heal, component, strategy, reason)

    def list_healing_attempts(self, *, component: str | None = None, limit: int = 100, offset: int = 0) -> R:
        """A page of healing attempts, newest first."""
        return self._invoke(calls.list_healing_attempts, component=component, limit=limit, offset=offset)

    # --- users, audit, auth -------------------------------------------------------------------
    def list_users(self, *, limit: int = 1000, offset: int = 0) -> R:
        """A page of users (admin)."""
        return self._invoke(calls.list_users, limit=limit, offset=offset)

    def create_user(self, username: str, password: str, role: str = "viewer") -> R:
        """Add a user (admin); ``role``: viewer, ingest, operator or admin."""
        return self._invoke(calls.create_user, username, password, role)

    def update_user(self, username: str, *, role: str | None = None, disabled: bool | None = None) -> R:
        """Change a user's role, or disable them (admin)."""
        return self._invoke(calls.update_user, username, role=role, disabled=disabled)

    def list_audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        since: When | float = None,
        limit: int = 100,
        offset: int = 0,
    ) -> R:
        """Who did what (admin). ``since``: an ISO time, a datetime or a duration back from now (``24h``)."""
        return self._invoke(
            calls.list_audit, actor=actor, action=action, since=since, limit=limit, offset=offset
        )

    def me(self) -> R:
        """The user the client acts as."""
        return self._invoke(calls.me)

    def logout(self) -> R:
        """Revoke the client's token on the guard."""
        return self._invoke(calls.logout)
