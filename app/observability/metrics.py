"""The guard's own Prometheus metrics, created per app (never at import time).

Every label set is bounded: components are admin-registered names, outcomes and statuses are enums.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.observability.check_counts import CheckCounts
from app.observability.component_gauges import ComponentGauges

PREFIX = "pipeline_guard"
# Every final outcome of a healing attempt (the attempt states that end one).
HEALING_OUTCOMES = ("succeeded", "failed", "interrupted", "cancelled", "dry_run", "rejected", "expired")


@dataclass
class GuardMetrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self._primed_healing: set[tuple[str, str]] = set()
        self.new_components: set[str] = set()  # the label sets of component_new
        self.up = Gauge(f"{PREFIX}_up", "1 while this guard process is serving.", registry=r)
        self.info = Gauge(
            f"{PREFIX}_build_info", "Build information of this guard.", ["version", "dialect"], registry=r
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited_requests_total",
            "Requests refused by the per-IP rate limit.",
            ["group"],
            registry=r,
        )
        self.login_failures = Counter(f"{PREFIX}_login_failures_total", "Failed login attempts.", registry=r)
        self.ratelimit_storage_errors = Counter(
            f"{PREFIX}_ratelimit_storage_errors_total",
            "Rate-limit storage (Redis) calls that failed or timed out; "
            "limits were enforced in memory instead.",
            registry=r,
        )
        self.ratelimit_fallback = Gauge(
            f"{PREFIX}_ratelimit_fallback",
            "1 while the shared rate-limit storage is away and limits are per process.",
            registry=r,
        )
        self.db_unavailable = Counter(
            f"{PREFIX}_database_unavailable_total",
            "Requests answered 503 because the database was unavailable.",
            registry=r,
        )
        # Only this replica's own count: one label value per process keeps cardinality bounded.
        self.replica_leases = Gauge(
            f"{PREFIX}_replica_leases", "Component leases held by this replica.", ["replica"], registry=r
        )
        self.lease_epoch_changes = Counter(
            f"{PREFIX}_lease_epoch_changes_total",
            "Leases this replica took over (new lease or taken from another holder: the epoch moved).",
            registry=r,
        )
        self.loop_runs = Counter(
            f"{PREFIX}_loop_runs_total", "Background loop iterations.", ["loop", "outcome"], registry=r
        )
        self.loop_overruns = Counter(
            f"{PREFIX}_loop_overruns_total",
            "Background loop iterations that took longer than their interval.",
            ["loop"],
            registry=r,
        )
        # component_health and component_status: one status per component, not six Gauge children.
        self.component_gauges = ComponentGauges(r, PREFIX)
        self.component_new = Gauge(
            f"{PREFIX}_component_new",
            "1 while a heartbeat component waits for its first ping (its status "
            "is shown as `new`; it has no uptime yet).",
            ["component"],
            registry=r,
        )
        self.health_percentage = Gauge(
            "pipeline_health_percentage",
            "Share of enabled components that are healthy, in percent.",
            registry=r,
        )
        self.check_counts = CheckCounts(r, PREFIX)
        self.results_dropped = Counter(
            f"{PREFIX}_results_dropped",
            "Check results dropped because the database stayed unavailable "
            "(buffer cap reached, or shutdown).",
            registry=r,
        )
        self.check_duration = Histogram(
            f"{PREFIX}_check_duration_seconds",
            "Check latency.",
            ["kind"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.points_ingested = Counter(
            f"{PREFIX}_metric_points_ingested",
            "Metric points stored (counted when their batch commits).",
            registry=r,
        )
        self.scheduler_lag = Gauge(
            f"{PREFIX}_scheduler_lag_seconds", "How late the most recent due checks started.", registry=r
        )
        self.result_write_lag = Gauge(
            f"{PREFIX}_result_write_lag_seconds",
            "How long the oldest check result of the most recent write waited between its observation and "
            "its commit (a guard that probes on time but stores late decides late).",
            registry=r,
        )
        # Healing attempts. The seed's name and the prefixed one carry the same counts.
        self.healing_attempts = Counter(
            "healing_attempts_total",
            "Healing attempts by outcome (seed name).",
            ["component", "strategy", "outcome"],
            registry=r,
        )
        self.guard_healing_attempts = Counter(
            f"{PREFIX}_healing_attempts_total",
            "Healing attempts by outcome.",
            ["component", "strategy", "outcome"],
            registry=r,
        )
        self.healing_in_progress = Gauge(
            f"{PREFIX}_healing_in_progress",
            "Healing attempts in flight (running or verifying), the count /api/v1/healing/stats reports.",
            registry=r,
        )
        self.circuit_open = Gauge(
            f"{PREFIX}_circuit_open",
            "1 while the component's healing circuit breaker is open.",
            ["component"],
            registry=r,
        )
        self.time_to_recover = Histogram(
            f"{PREFIX}_time_to_recover_seconds",
            "From incident start to verified healthy after a heal.",
            registry=r,
            buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.healing_detection_to_action = Histogram(
            f"{PREFIX}_healing_detection_to_action_seconds",
            "From the check result that opened the incident to the recovery action's start.",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

        self.alerts_firing = Gauge(
            f"{PREFIX}_alerts_firing",
            "Alerts currently firing (not acknowledged, silenced or resolved).",
            ["severity"],
            registry=r,
        )
        self.notifications = Counter(
            f"{PREFIX}_notifications_total",
            "Notification delivery tries by channel name and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self.maintenance_windows_open = Gauge(
            f"{PREFIX}_maintenance_windows_open", "Silences and maintenance windows open now.", registry=r
        )
        self.component_in_maintenance = Gauge(
            f"{PREFIX}_component_in_maintenance",
            "1 while an open maintenance window (silence) covers the component: checks run, "
            "notifications and healing wait.",
            ["component"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            f"{PREFIX}_outbox_pending",
            "Notifications waiting in the outbox (pending or being sent).",
            registry=r,
        )

    def count_healing(self, component: str, strategy: str, outcome: str) -> None:
        self.prime_healing(component, [strategy])
        self.healing_attempts.labels(component, strategy, outcome).inc()
        self.guard_healing_attempts.labels(component, strategy, outcome).inc()

    def prime_healing(self, component: str, strategies: list[str]) -> None:
        """Show every outcome of these strategies at 0 before the first attempt: a counter that first
        appears at 1 is invisible to ``increase()``/``rate()``, so the first attempt would never count."""
        for strategy in strategies:
            if (component, strategy) in self._primed_healing:
                continue
            self._primed_healing.add((component, strategy))
            for outcome in HEALING_OUTCOMES:
                self.healing_attempts.labels(component, strategy, outcome)
                self.guard_healing_attempts.labels(component, strategy, outcome)

    def prime_healing_policy(self, component: str, recovery: dict | None) -> None:
        """Prime the counters of a component's recovery policy (its strategy kinds)."""
        kinds = [s.get("kind") for s in (recovery or {}).get("strategies") or [] if isinstance(s, dict)]
        self.prime_healing(component, [k for k in kinds if isinstance(k, str)])
