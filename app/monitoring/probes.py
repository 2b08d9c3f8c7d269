"""Running one check for the scheduler: a component's `check` document read into an `Entry`, its
params validated once per version, and the probe itself — bounded, and never raising (a broken or
misbehaving check kind becomes a DOWN result).

`Prober` owns the HTTP session every probe shares (opened and closed with the scheduler).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from app.checks.base import CheckContext, CheckResult
from app.checks.heartbeat import HeartbeatState
from app.core.deadlines import lenient_timeout
from app.db.models import Component, ComponentState
from app.db.models.healing import AttemptState
from app.db.session import session_scope
from app.db.types import utcnow
from app.healing.reruns import action_in_flight
from app.monitoring import state_machine as sm
from app.monitoring.hearing import Hearing
from app.security.check_secrets import reveal_params

if TYPE_CHECKING:
    import aiohttp

    from app.platform.core import Core
    from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard.monitoring")

COMMON_KEYS = ("kind", "interval", "timeout", "failure_threshold", "success_threshold")
TIMEOUT_SLACK_S = 1.5  # on top of the check's own timeout, for the hard cap around the kind's run


@dataclass
class Entry:
    component_id: int
    name: str
    version: int
    kind: str
    params: dict[str, Any]
    interval: float
    timeout: float
    base_due: float = 0.0
    due: float = 0.0
    generation: int = 0
    running: bool = False
    validated: dict[str, Any] | None = None  # params validated once per version, not per probe
    invalid: str | None = None
    ctx: CheckContext | None = None  # built once per version (heartbeats get a fresh one per run)
    counters: dict[Any, Any] | None = None  # its checks_total keys per outcome, cached


@dataclass
class CheckConfig:
    """A component's `check` document with the monitoring defaults filled in."""

    kind: str
    params: dict[str, Any]
    interval: float
    timeout: float
    thresholds: sm.Thresholds


def _seconds(value: Any, default: float) -> float:
    """A stored check's interval or timeout, in seconds; the default when it is missing or unusable.

    The API and the config file refuse a duration that is not finite and positive, but a row
    written before they did may still hold one (SQLite's JSON keeps NaN): a NaN interval would sit
    at the head of the timetable, never due, and stop every probe behind it."""
    if not value:
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        log.warning("a stored check duration %r is not a positive finite number; using %g s", value, default)
        return float(default)
    return seconds


def check_config(check: dict[str, Any], mon: Any) -> CheckConfig:
    thresholds = sm.Thresholds(
        failure_threshold=int(check.get("failure_threshold") or mon.failure_threshold),
        success_threshold=int(check.get("success_threshold") or mon.success_threshold),
        flap_window=mon.flap_window,
        flap_threshold=mon.flap_threshold,
        recovery_grace_s=mon.recovery_grace,
    )
    interval = _seconds(check.get("interval"), mon.interval)
    timeout = _seconds(check.get("timeout"), mon.health_check_timeout)
    params = {k: v for k, v in check.items() if k not in COMMON_KEYS}
    if check.get("timeout"):
        params["timeout"] = timeout
    return CheckConfig(check["kind"], params, interval, timeout, thresholds)


class Prober:
    def __init__(
        self,
        state: Core,
        registry: Any,
        *,
        secret_box: SecretBox,
        replica_id: str | None = None,
        hearing: Hearing | None = None,
    ):
        """``replica_id``: sent to targets as X-Pipeline-Guard-Replica (which replica probed);
        ``hearing``: the process's (shared with the rule evaluator)."""
        self.state = state
        self.settings = state.settings
        self.registry = registry
        self.secret_box = secret_box
        self.replica_id = replica_id
        self.http_session: aiohttp.ClientSession | None = None
        # Up to when pings sent to this process are stored: heartbeats are judged as of then.
        self.hearing = hearing or Hearing()

    def open(self) -> None:
        from app.outbound.http import make_session

        self.hearing.start()
        if self.http_session is None:
            workers = self.settings.max_workers
            # Which replica probed: lets a target (and the fault tests) see that each component is
            # checked by exactly one replica.
            replica = self.replica_id
            headers = {"X-Pipeline-Guard-Replica": replica} if replica else None
            self.http_session = make_session(
                limit=workers, limit_per_host=max(8, workers // 2), headers=headers
            )

    async def close(self) -> None:
        await self.hearing.stop()
        if self.http_session is not None:
            await self.http_session.close()
            self.http_session = None

    def validate(self, entry: Entry) -> None:
        entry.ctx = self._context(entry)
        try:
            params = reveal_params(entry.params, self.secret_box)  # credentials: for the probe only
            entry.validated, entry.invalid = (
                self.registry.validate(entry.kind, params, self._context(entry)),
                None,
            )
        except Exception as exc:  # noqa: BLE001 - unknown kind, bad params, refused by policy: a DOWN result
            entry.validated, entry.invalid = None, f"invalid check configuration: {exc}"[:300]

    def _context(self, entry: Entry) -> CheckContext:
        mon = self.settings.monitoring
        return CheckContext(
            timeout=entry.timeout,
            http_session=self.http_session,
            commands_enabled=mon.command_checks_enabled,
            command_allowlist=list(mon.command_allowlist),
        )

    async def execute(self, entry: Entry, started: float | None = None) -> CheckResult:
        if entry.invalid is not None or entry.validated is None:
            return CheckResult.down(entry.invalid or "invalid check configuration")
        ctx = entry.ctx
        if ctx is None or ctx.http_session is not self.http_session:
            ctx = entry.ctx = self._context(entry)
        kind = self.registry.get(entry.kind)
        if started is None:
            started = time.monotonic()
        try:
            if entry.kind == "heartbeat":
                ctx = self._context(entry)
                # Judged as of the instant every ping sent here is stored: taken before the state is
                # read, so a ping that commits in between is in what is read.
                ctx.now = self.hearing.heard_until(utcnow(), entry.name)
                ctx.heartbeat = await self._heartbeat_state(entry.component_id)
            if getattr(kind, "self_bounded", False):
                result = await kind.probe(entry.validated, ctx)
            else:
                # This cap makes sure a misbehaving third-party kind cannot hold a worker forever.
                # Params were validated when the component (version) was loaded.
                async with lenient_timeout(entry.timeout + TIMEOUT_SLACK_S):
                    result = await kind.probe(entry.validated, ctx)
            if not isinstance(result, CheckResult):
                return CheckResult.down(f"check {entry.kind!r} returned no result")
            if ctx.now is not None:
                result.observed_at = utcnow()  # when it was judged, not the instant it judged as of
            return result
        except TimeoutError:
            return CheckResult.down(f"timeout after {entry.timeout:g}s", time.monotonic() - started)
        except Exception as exc:  # noqa: BLE001 - one broken check never stops the scheduler
            log.warning("check of %s failed: %s", entry.name, type(exc).__name__)
            return CheckResult.down(f"check failed: internal error ({type(exc).__name__})")

    async def _heartbeat_state(self, component_id: int) -> HeartbeatState:
        async with session_scope(self.state.sessionmaker) as session:
            row = (
                await session.execute(
                    select(
                        Component.created_at,
                        ComponentState.last_ping_at,
                        ComponentState.last_ping_status,
                        ComponentState.last_start_at,
                        ComponentState.last_duration_s,
                    )
                    .join(ComponentState, ComponentState.component_id == Component.id)
                    .where(Component.id == component_id)
                )
            ).one()
            action = (await session.execute(action_in_flight(component_id))).first()
        action_at, verify_until = (
            (None, None) if action is None else _judged_since(action[0], action[1], action[2])
        )
        return HeartbeatState(
            created_at=row[0],
            last_ping_at=row[1],
            last_ping_status=row[2],
            last_start_at=row[3],
            last_duration_s=row[4],
            action_at=action_at,
            verify_until=verify_until,
        )


def _judged_since(
    started_at: datetime | None, state: str, verify_deadline: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """(action_at, verify_until): the window ends at the verification's deadline; none while the
    action itself still runs."""
    return started_at, verify_deadline if state == AttemptState.VERIFYING else None
