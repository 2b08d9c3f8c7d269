"""Faults of the guard itself while a recovery action runs, each with its own guard process:

- the guard is killed with SIGKILL while the restart command runs: after a restart of the guard the
  command's process group is gone, never two actions run at once, the incident ends healed or escalated;
- the database goes away for a while during the action (Postgres: every connection cut and refused;
  SQLite: another process holds the write lock past the busy timeout): the attempt does not stay
  `running`, the slot is freed and healing goes on for the next incident.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pytest

from tests.scenarios.campaign import http_check, recovery
from tests.scenarios.harness import (
    FIGURES,
    Figures,
    GuardProcess,
    Workload,
    group_alive,
    guard_config,
    parse_time,
    seconds,
    wait_for,
)

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]
SLACK = 3.0


def add_component(guard: GuardProcess, workload: Workload, **policy) -> None:
    workload.start()
    guard.post(
        "/api/v1/components",
        {
            "name": workload.name,
            "critical": True,
            "labels": {"app": workload.name},
            "check": http_check(workload),
            "recovery": recovery(workload, **policy),
        },
        expect=201,
    )


def healed(guard: GuardProcess, name: str, *, after: int = 0):
    """The component is healthy again and one of its attempts (past the first `after`) was verified."""
    if guard.status(name) != "healthy":
        return None
    attempts = guard.attempts(name)[after:]
    return [a for a in attempts if a["state"] == "succeeded"] or None


def story(guard: GuardProcess, name: str) -> str:
    lines = [f"{t['at']} {t['previous']} -> {t['current']}: {t['reason']}" for t in guard.transitions(name)]
    lines += [
        f"attempt {a['id']} #{a['attempt_number']} {a['state']} {a['started_at']}..{a['finished_at']}: "
        f"{a['detail']}"
        for a in guard.attempts(name)
    ]
    lines += [f"alert {a['fingerprint']} {a['status']}: {a['message']}" for a in guard.alerts(name)]
    return "\n".join(lines) + "\n--- guard log ---\n" + guard.tail(30)


def test_guard_killed_during_an_action(guard_db):
    url, workdir = guard_db
    guard = GuardProcess(url, workdir / "guard-kill", config=guard_config())
    worker = Workload(workdir / "kill-workloads", "worker")
    # The first restart hangs (5 min) in a child of its process group; later ones are quick.
    worker.configure(action_sleep="300 once")
    try:
        guard.start()
        add_component(guard, worker, max_attempts=3, verify_timeout=30)
        wait_for(lambda: guard.status("worker") == "healthy", 60, what="worker healthy")
        injected = worker.mode("crash")
        wait_for(lambda: worker.actions() >= 1, 60, what="the first restart to start")
        orphan = worker.action_groups()[0]
        time.sleep(0.5)
        guard.kill9()
        assert group_alive(orphan), "the command should outlive the guard that started it"

        guard.start()
        restarted = datetime.now(UTC)

        def why():
            return story(guard, "worker") + f"\nactions: {worker.action_lines()}"

        wait_for(
            lambda: not group_alive(orphan),
            45,
            what="the restarted guard to kill the interrupted command's process group",
            story=why,
        )
        ended = wait_for(
            lambda: (
                healed(guard, "worker")
                or [a for a in guard.alerts("worker") if a["fingerprint"].startswith("healing-exhausted:")]
            ),
            90,
            what="the incident to end healed or escalated",
            story=why,
        )
        assert worker.concurrent_actions() == 0, worker.action_lines()
        attempts = guard.attempts("worker")
        assert not [a for a in attempts if a["state"] in ("running", "verifying")], story(guard, "worker")
        assert worker.actions() <= 3, story(guard, "worker")
        transitions = guard.transitions("worker")
        detected = next(
            (t for t in transitions if parse_time(t["at"]) >= injected and t["current"] != "healthy"), None
        )
        back = next(
            (t for t in transitions if parse_time(t["at"]) >= restarted and t["current"] == "healthy"), None
        )
        FIGURES.append(
            Figures(
                dialect=guard.dialect,
                scenario="guard-kill-9",
                detection_s=seconds(parse_time(detected["at"]), injected) if detected else None,
                mttr_s=seconds(parse_time(back["at"]), injected) if back else None,
                actions=worker.actions(),
                outcome="healed" if ended and "state" in ended[0] else "escalated",
                notes=[",".join(a["state"] for a in attempts)],
            )
        )
    finally:
        guard.stop()
        worker.stop()


class Blip:
    """The database away for `seconds`, the way each dialect loses it."""

    def __init__(self, guard: GuardProcess):
        self.guard = guard

    def run(self, seconds: float) -> None:
        if self.guard.proxy is not None:
            self.guard.proxy.cut()
            try:
                time.sleep(seconds)
            finally:
                self.guard.proxy.restore()
            return
        holder = sqlite3.connect(self.guard.sqlite_path, timeout=10, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")  # every other writer waits, then fails after its busy timeout
            time.sleep(seconds)
            holder.execute("ROLLBACK")
        finally:
            holder.close()


def test_database_blip_during_an_action(guard_db):
    url, workdir = guard_db
    # One slot: an attempt left `running` by the blip would stop every later heal.
    guard = GuardProcess(url, workdir / "guard-blip", config=guard_config(max_concurrent=1))
    slow = Workload(workdir / "blip-workloads", "slow-action")
    slow.configure(action_sleep="4")
    second = Workload(workdir / "blip-workloads", "next-incident")
    second.configure()
    try:
        guard.start()
        add_component(guard, slow, max_attempts=3, verify_timeout=20)
        add_component(guard, second, max_attempts=3, verify_timeout=20)
        wait_for(
            lambda: guard.status("slow-action") == "healthy" and guard.status("next-incident") == "healthy",
            60,
            what="both healthy",
        )
        injected = slow.mode("crash")
        wait_for(lambda: slow.actions() >= 1, 60, what="the restart to start")
        # Longer than the action (4 s) plus SQLite's busy timeout (5 s): recording the outcome fails.
        Blip(guard).run(12.0)
        after_blip = datetime.now(UTC)

        def settled():
            attempts = guard.attempts("slow-action")
            return (
                guard.status("slow-action") == "healthy"
                and attempts
                and not [a for a in attempts if a["state"] in ("running", "verifying")]
            )

        wait_for(
            settled,
            60,
            what="the attempt caught by the blip to be finished (healthy, none left running)",
            story=lambda: story(guard, "slow-action"),
        )
        injected_next = second.mode("crash")
        wait_for(
            lambda: healed(guard, "next-incident"),
            60,
            what="the next incident to be healed (the slot was freed)",
            story=lambda: story(guard, "next-incident"),
        )
        stats = guard.get("/api/v1/healing/stats")
        assert stats["in_progress"] == 0, stats
        assert slow.concurrent_actions() == 0, slow.action_lines()
        assert second.actions() == 1, story(guard, "next-incident")
        for name, workload, at in (("slow-action", slow, injected), ("next-incident", second, injected_next)):
            transitions = guard.transitions(name)
            back = next(
                (
                    t
                    for t in transitions
                    if parse_time(t["at"]) >= max(at, after_blip if workload is slow else at)
                    and t["current"] == "healthy"
                ),
                None,
            )
            FIGURES.append(
                Figures(
                    dialect=guard.dialect,
                    scenario=f"db-blip:{name}",
                    mttr_s=seconds(parse_time(back["at"]), at) if back else None,
                    actions=workload.actions(),
                    outcome="healed",
                    notes=[",".join(a["state"] for a in guard.attempts(name))],
                )
            )
    finally:
        guard.stop()
        slow.stop()
        second.stop()
