"""Postgres outage through the TCP proxy: liveness stays up, readiness and writes answer 503 fast,
probing goes on in memory, and everything resumes by itself once the database is back."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.faults


def test_outage_degraded_mode_and_recovery(cluster_factory):
    cluster = cluster_factory(lease_ttl=6.0, renew_interval=2.0)
    (guard,) = cluster.add(1)
    cluster.create_components(20)
    headers = cluster.token()
    assert cluster.wait_for(lambda: len(cluster.leases()) == 20, 20)

    def count_results():
        return cluster.sql("SELECT count(*) AS n FROM check_results")[0]["n"]

    assert cluster.wait_for(lambda: count_results() >= 20, 15)

    guard.proxy.cut()
    cut_at = time.monotonic()
    with httpx.Client(base_url=guard.base, headers=headers, timeout=15) as client:
        time.sleep(0.5)
        health = client.get("/health")
        ready = client.get("/ready")
        started = time.monotonic()
        write = client.post("/api/v1/components", json={"name": "during-outage"})
        write_s = time.monotonic() - started
        print(
            f"\n(e) database cut: /health {health.status_code}, /ready {ready.status_code}, "
            f"write {write.status_code} in {write_s:.2f}s: {write.json()['error']['type']}"
        )
        assert health.status_code == 200
        assert ready.status_code == 503 and ready.json()["error"]["type"] == "service_unavailable"
        assert write.status_code == 503 and write.json()["error"]["type"] == "service_unavailable"
        assert write.headers.get("Retry-After")
        # The scheduler keeps probing while the database is away (state in memory).
        probes_before = len(cluster.recorder.probes_since(cut_at))
        time.sleep(8)  # longer than the lease TTL: the local deadline passes, acting stops
        probes_during = len(cluster.recorder.probes_since(cut_at)) - probes_before
        print(f"    probes during the outage (8 s, 20 components at 1 s): {probes_during}")
        assert probes_during >= 20
        results_before = count_results()

        guard.proxy.restore()
        restored = time.monotonic()
        ready_after = None
        write_after = None
        while time.monotonic() - restored < 30:
            if ready_after is None and client.get("/ready").status_code == 200:
                ready_after = time.monotonic() - restored
            if ready_after is not None:
                r = client.post("/api/v1/components", json={"name": f"after-{int(time.monotonic() * 1000)}"})
                if r.status_code == 201:
                    write_after = time.monotonic() - restored
                    break
            time.sleep(0.1)
        assert cluster.wait_for(lambda: count_results() > results_before + 20, 15)
        flushed = time.monotonic() - restored
        assert cluster.wait_for(lambda: len(cluster.leases()) >= 20, 15)
        leases_back = time.monotonic() - restored
        print(
            f"    recovery after the database returned: /ready 200 in {ready_after:.2f}s, first write "
            f"{write_after:.2f}s, buffered results written by {flushed:.2f}s, leases valid again by "
            f"{leases_back:.2f}s (no restart; process pid unchanged: {guard.proc.poll() is None})"
        )
        assert ready_after is not None and ready_after <= 5
        assert write_after is not None and write_after <= 5
        assert guard.proc.poll() is None


def test_refuses_to_start_without_the_database(cluster_factory):
    from tests.faults.conftest import GuardProcess

    cluster = cluster_factory()
    guard = GuardProcess(cluster, 0)
    cluster.guards.append(guard)
    guard.proxy.cut()
    guard.start()
    assert guard.proc.wait(timeout=60) != 0
    log = guard.tail()
    print(
        f"\n(e) start with the database down: exit {guard.proc.returncode}; "
        f"{[line for line in log.splitlines() if 'cannot reach the database' in line][:1]}"
    )
    assert "cannot reach the database" in log and "refusing to start" in log
