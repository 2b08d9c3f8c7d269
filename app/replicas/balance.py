"""The desired assignment of components to live replicas: rendezvous (highest random weight) hashing.

Every replica computes the same answer from the same inputs (component ids and regions, live replica
ids and regions), so no coordinator is needed; when a replica joins or leaves only ~1/N of the
components move. A component labelled ``region=R`` goes to a live replica in R when one exists (the
probe then runs from the component's own region), otherwise to any live replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def _weight(component_id: int, replica_id: str) -> int:
    digest = hashlib.blake2b(f"{component_id}\x00{replica_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_of(component_id: int, region: str | None, replicas: Mapping[str, str | None]) -> str | None:
    """The replica that should own this component (None when no replica is live)."""
    if not replicas:
        return None
    candidates: Iterable[str] = replicas
    if region is not None:
        local = [rid for rid, r_region in replicas.items() if r_region == region]
        if local:
            candidates = local
    return max(candidates, key=lambda rid: (_weight(component_id, rid), rid))


def assign(components: Mapping[int, str | None], replicas: Mapping[str, str | None]) -> dict[int, str]:
    """component id -> replica id, for every component (empty when no replica is live)."""
    result: dict[int, str] = {}
    for cid, region in components.items():
        owner = owner_of(cid, region, replicas)
        if owner is not None:
            result[cid] = owner
    return result


def desired_for(
    replica_id: str, components: Mapping[int, str | None], replicas: Mapping[str, str | None]
) -> set[int]:
    return {cid for cid, owner in assign(components, replicas).items() if owner == replica_id}
