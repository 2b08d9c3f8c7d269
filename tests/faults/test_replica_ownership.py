"""Three real guard processes on one Postgres: one owner per component (leases and probes agree),
kill -9 → takeover within the TTL, SIGTERM → hand-over in about a second, join → rebalance."""

from __future__ import annotations

import collections
import itertools
import time

import pytest

pytestmark = pytest.mark.faults


def runs(sequence: list[tuple[float, str]]) -> list[str]:
    """The replicas that probed a component, in order, consecutive probes by the same one merged."""
    return [replica for replica, _ in itertools.groupby(r for _, r in sequence)]


def who_raw(cluster, name: str, since: float) -> list[tuple[float, str, str | None]]:
    return [p for p in cluster.recorder.probes_since(since) if p[1] == name]


def probe_owners(cluster, since: float) -> dict[str, set[str]]:
    owners: dict[str, set[str]] = collections.defaultdict(set)
    for _, name, replica in cluster.recorder.probes_since(since):
        owners[name].add(replica)
    return owners


def test_three_replicas_share_components_and_take_over(cluster_factory):
    cluster = cluster_factory(lease_ttl=6.0, renew_interval=2.0)
    cluster.add(3)
    names = cluster.create_components(120)
    # Settled: every component leased, probes agree with the leases.
    assert cluster.wait_for(lambda: len(cluster.leases()) == 120, 20)
    ids = {r["id"]: r["name"] for r in cluster.sql("SELECT id, name FROM components")}
    time.sleep(3)
    window = time.monotonic()
    time.sleep(3)
    leases = cluster.leases()
    owners = probe_owners(cluster, window)
    per_replica = collections.Counter(rid for rid, _ in leases.values())
    print(f"\n(a) 120 components over 3 replicas: leases per replica {sorted(per_replica.values())}")
    assert len(per_replica) == 3
    assert set(owners) == set(names)
    doubles = {n: r for n, r in owners.items() if len(r) != 1}
    assert not doubles, doubles
    assert all(owners[ids[cid]] == {rid} for cid, (rid, _) in leases.items())

    # (b) kill -9: its components are taken over within the TTL.
    victim = cluster.guards[0]
    victim_id = cluster.replica_ids()[f"guard{victim.index}"]
    lost = {cid for cid, (rid, _) in leases.items() if rid == victim_id}
    killed = time.monotonic()
    victim.kill9()

    def taken_over():
        now = cluster.leases()
        return all(cid in now and now[cid][0] != victim_id for cid in lost)

    assert cluster.wait_for(taken_over, cluster.lease_ttl * 3, step=0.05)
    takeover = time.monotonic() - killed
    after = cluster.leases()
    print(
        f"(b) kill -9 of a replica holding {len(lost)} leases: taken over in {takeover:.2f}s "
        f"(lease TTL {cluster.lease_ttl}s, renew {cluster.renew_interval}s); "
        f"epochs of moved leases +{min(after[c][1] - leases[c][1] for c in lost)}"
    )
    assert takeover <= cluster.lease_ttl + cluster.renew_interval + 1.0

    # (d) SIGTERM (rolling restart): leases handed over, each with its next check's due time.
    time.sleep(3)  # settle after the takeover, so the gap measured below is the hand-over's own
    after = cluster.leases()
    leaving = cluster.guards[1]
    leaving_id = cluster.replica_ids()[f"guard{leaving.index}"]
    handed = {cid for cid, (rid, _) in after.items() if rid == leaving_id}
    started = time.monotonic()
    leaving.sigterm(wait=False)

    def handed_over():
        now = cluster.leases()
        return all(cid in now and now[cid][0] != leaving_id for cid in handed)

    assert cluster.wait_for(handed_over, cluster.lease_ttl * 2, step=0.05)
    handover = time.monotonic() - started
    leaving.proc.wait(timeout=30)
    print(
        f"(d) SIGTERM of a replica holding {len(handed)} leases: handed over in {handover:.2f}s "
        f"(process exit after {time.monotonic() - started:.2f}s)"
    )
    assert handover < cluster.lease_ttl
    assert len(cluster.leases()) == 120
    # Rolling restart: the longest gap between two probes of a handed-over component (interval 1 s).
    time.sleep(2)
    ids_to_names = {r["id"]: r["name"] for r in cluster.sql("SELECT id, name FROM components")}
    moved_names = {ids_to_names[cid] for cid in handed}
    times: dict[str, list[float]] = collections.defaultdict(list)
    who: dict[str, list[tuple[float, str]]] = collections.defaultdict(list)
    hand_gap: dict[str, float] = {}  # last probe by the leaving replica -> first probe by its successor
    for at, name, rid in cluster.recorder.probes_since(started - 2):
        if name in moved_names:
            times[name].append(at)
            who[name].append((round(at - started, 2), (rid or "?").split("-")[0]))
            if rid != leaving_id and name not in hand_gap:
                hand_gap[name] = at - max(
                    [t for t, n, r in who_raw(cluster, name, started - 2) if r == leaving_id], default=at
                )
    gaps = [max(b - a for a, b in itertools.pairwise(ts)) for ts in times.values() if len(ts) > 1]
    worst = sorted(times, key=lambda n: -max(b - a for a, b in itertools.pairwise(times[n])))[:2]
    for n in worst:
        print(f"    slowest: {n} probes (s after SIGTERM, replica) {who[n]}")
    hg = sorted(hand_gap.values())
    print(
        "    probing gap across the SIGTERM hand-over (check interval 1 s, jitter 10 %): max "
        f"{max(gaps):.2f}s, "
        f"median {sorted(gaps)[len(gaps) // 2]:.2f}s over {len(gaps)} components; last probe by the leaving "
        f"replica -> first by its successor: max {hg[-1]:.2f}s, median {hg[len(hg) // 2]:.2f}s"
    )
    assert len(gaps) == len(moved_names)
    # No timed bound on the figures above (a loaded machine stretches them); two bounds a real defect
    # breaks whatever the load:
    # - Exclusive ownership: each moved component is probed by the leaving replica, then by its
    #   successor, and never again by the leaving one (two holders at once would interleave).
    switched_back = {n: who[n] for n in moved_names if len(runs(who[n])) > 2}
    assert not switched_back, switched_back
    # - Nobody's component: at drain start the leaving replica renews its leases (deadline t0 + TTL),
    #   having probed each within one interval before; whatever happens to the hand-over, a successor
    #   takes a lease expired at t0 + TTL on its next tick (renew interval) and probes it at once, as
    #   overdue. So no gap exceeds TTL + renew interval + one interval (+ 10 % jitter) plus one
    #   interval of dispatch slack; a longer one is a component nobody probed although its lease was
    #   free (a lease lost on the way). That the leases moved before they could expire (hand-over, not
    #   expiry) is asserted above (handover < TTL).
    interval = 1.0
    nobody = cluster.lease_ttl + cluster.renew_interval + 2.1 * interval
    assert max(gaps) <= nobody, (max(gaps), nobody, worst, [who[n] for n in worst])

    # A replica joins: the survivor hands over its share gracefully.
    joined = time.monotonic()
    (_newcomer,) = cluster.add(1)
    assert cluster.wait_for(
        lambda: len({rid for rid, _ in cluster.leases().values()}) == 2 and len(cluster.leases()) == 120,
        20,
        step=0.05,
    )
    print(
        f"    join: leases spread over 2 replicas {time.monotonic() - joined:.2f}s after the process started "
        f"(incl. its boot)"
    )
