"""Rendezvous assignment: deterministic, region-preferring, moves ~1/N on a join."""

from app.replicas.balance import assign, owner_of


def test_assignment_is_deterministic_and_total():
    components = dict.fromkeys(range(1, 301))
    replicas = {"a": None, "b": None, "c": None}
    first = assign(components, replicas)
    assert first == assign(dict(reversed(list(components.items()))), dict(reversed(list(replicas.items()))))
    assert set(first) == set(components)
    counts = {r: sum(1 for o in first.values() if o == r) for r in replicas}
    assert all(60 <= n <= 140 for n in counts.values()), counts


def test_join_moves_only_to_the_newcomer():
    components = dict.fromkeys(range(1, 301))
    before = assign(components, {"a": None, "b": None, "c": None})
    after = assign(components, {"a": None, "b": None, "c": None, "d": None})
    moved = [cid for cid in components if before[cid] != after[cid]]
    assert all(after[cid] == "d" for cid in moved)
    assert 30 <= len(moved) <= 120


def test_region_preference_and_fallback():
    replicas = {"eu-1": "eu", "eu-2": "eu", "us-1": "us"}
    assert all(owner_of(cid, "us", replicas) == "us-1" for cid in range(50))
    assert all(owner_of(cid, "eu", replicas) in {"eu-1", "eu-2"} for cid in range(50))
    # No replica in the component's region: any live replica.
    assert {owner_of(cid, "ap", replicas) for cid in range(50)} == set(replicas)
    assert owner_of(1, None, {}) is None
