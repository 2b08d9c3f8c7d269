"""Leases on Postgres: one owner per component, graceful rebalance, takeover with a new epoch,
fencing by token (in the claim's transaction) and by time (local deadline)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from app.replicas.balance import assign
from app.replicas.leases import LeaseLost
from tests.replicas.conftest import add_components, expire, lease_rows, replicas, tick


async def test_each_component_has_exactly_one_owner_and_join_rebalances(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None, None]) as guards:
        a, b, c = guards
        ids = await add_components(a, 90)
        await tick([a, b])
        rows = await lease_rows(a)
        assert set(rows) == set(ids) and all(valid for _, _, valid in rows.values())
        assert {rid for rid, _, _ in rows.values()} == {a.manager.replica_id, b.manager.replica_id}
        before = await lease_rows(a)
        # c joins: a and b release its share on their next tick, c takes it on its next.
        await tick([c, a, b, c], rounds=1)
        rows = await lease_rows(a)
        live = {g.manager.replica_id: None for g in guards}
        expected = assign(dict.fromkeys(ids), live)
        assert {cid: rid for cid, (rid, _, _) in rows.items()} == expected
        for g in guards:
            mine = {cid for cid, owner in expected.items() if owner == g.manager.replica_id}
            assert set(g.manager.epochs) == mine
            assert await g.manager.owned(set(ids)) == mine
        # Moved leases changed hands: their epoch went up by one; the others kept theirs.
        moved = {cid for cid, (rid, _, _) in rows.items() if rid == c.manager.replica_id}
        assert moved and all(rows[cid][1] == before[cid][1] + 1 for cid in moved)
        assert all(rows[cid][1] == before[cid][1] for cid in set(ids) - moved)


async def test_release_on_stop_and_takeover(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        ids = await add_components(a, 40)
        await tick([a, b, a, b], rounds=1)
        a_held = set(a.manager.epochs)
        assert a_held and set(b.manager.epochs) == set(ids) - a_held
        await a.manager.release_all()
        assert await a.manager.owned(set(ids)) == set() and a.manager.epoch_for(next(iter(a_held))) is None
        started = time.monotonic()
        await b.manager.run_once()
        assert set(b.manager.epochs) == set(ids)
        print(f"\nhand-over after release: one tick, {time.monotonic() - started:.3f}s")
        admin = await b.headers("admin")  # (argon2 is slow: renew the short test leases after it)
        await b.manager.run_once()
        response = await b.client.get("/api/v1/replicas", headers=admin)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == 1 and body["unowned_components"] == 0  # a is gone
        only = body["items"][0]
        assert (
            only["id"] == b.manager.replica_id
            and only["leases"] == 40
            and only["live"]
            and only["this_replica"]
        )
        gone = await b.client.get("/api/v1/replicas?include_gone=true&components_limit=5", headers=admin)
        items = {i["id"]: i for i in gone.json()["items"]}
        assert items[a.manager.replica_id]["status"] == "gone"
        assert len(items[b.manager.replica_id]["components"]) == 5
        assert items[b.manager.replica_id]["components_truncated"]
        viewer = await b.client.get("/api/v1/replicas", headers=await b.headers("operator"))
        assert viewer.status_code == 403


async def test_fence_by_token_and_by_time(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        epoch = a.manager.epochs[cid]
        async with a.session() as session:
            assert await a.manager.fence(session, cid) == epoch
        # A's lease and heartbeat expire in the database (as if its renewals stopped); B takes over.
        await expire(a)
        await b.manager.run_once()
        assert b.manager.epochs.get(cid) == epoch + 1
        # A's local deadline has not passed yet: only the check in the transaction can stop it.
        assert a.manager.epoch_for(cid) == epoch
        with pytest.raises(LeaseLost):
            async with a.session() as session:
                await a.manager.fence(session, cid)
        # A's buffered observations of the component are not written either.
        async with a.session() as session:
            assert await a.manager.fence_writes(session, {cid}) == set()
        async with b.session() as session:
            assert await b.manager.fence_writes(session, {cid}) == {cid}
        # By time: without a successful renewal the local deadline passes before the lease's expiry.
        b.manager.deadlines[cid] = time.monotonic() - 0.001
        assert b.manager.epoch_for(cid) is None
        with pytest.raises(LeaseLost):
            async with b.session() as session:
                await b.manager.fence(session, cid)


async def test_local_deadline_is_before_the_database_expiry(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        async with a.session() as session:
            remaining_db = (
                await session.execute(
                    text("SELECT extract(epoch FROM expires_at - clock_timestamp()) FROM component_leases")
                )
            ).scalar_one()
        remaining_local = a.manager.deadlines[cid] - time.monotonic()
        assert remaining_local < float(remaining_db)
        assert remaining_local > 0


async def test_region_preference(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, ["eu", "us"]) as (eu, us):
        eu_ids = await add_components(eu, 20, region="eu")
        us_ids = await add_components(eu, 20, region="us", start=100)
        ap_ids = await add_components(eu, 20, region="ap", start=200)
        await tick([eu, us, eu, us], rounds=1)
        assert set(eu_ids) <= set(eu.manager.epochs) and set(us_ids) <= set(us.manager.epochs)
        ap_owned = {cid for cid in ap_ids if cid in eu.manager.epochs} | {
            cid for cid in ap_ids if cid in us.manager.epochs
        }
        assert ap_owned == set(ap_ids)


async def test_dead_replica_is_marked_gone_and_replaced(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None], lease_ttl=2.0, renew_interval=0.5) as (a, b):
        ids = await add_components(a, 30)
        await tick([a, b, a, b], rounds=1)
        # b "dies": it stops ticking; its heartbeat and leases age out on the database clock.
        async with a.session() as session:
            await session.execute(
                text("UPDATE replicas SET heartbeat_at = now() - interval '10 s' WHERE id = :id"),
                {"id": b.manager.replica_id},
            )
            await session.execute(
                text(
                    "UPDATE component_leases SET expires_at = now() - interval '1 s' WHERE replica_id = :id"
                ),
                {"id": b.manager.replica_id},
            )
        a.manager._last_renew = -1e18
        await a.manager.run_once()
        assert set(a.manager.epochs) == set(ids)
        async with a.session() as session:
            status = (
                await session.execute(
                    text("SELECT status FROM replicas WHERE id = :id"), {"id": b.manager.replica_id}
                )
            ).scalar_one()
        assert status == "gone"
        assert a.runtime.metrics.lease_epoch_changes._value.get() >= 1


async def test_a_tick_over_an_unchanged_fleet_recomputes_nothing_yet_follows_every_change(
    pg_url, tmp_path, monkeypatch
):
    from app.replicas import balance

    calls = []
    real = balance.desired_for

    def counting(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(balance, "desired_for", counting)
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        ids = await add_components(a, 20)
        await tick([a, b, a, b], rounds=1)
        a_held = set(a.manager.epochs)
        assert a_held and set(b.manager.epochs) == set(ids) - a_held
        # Nothing changed: the assignment is not recomputed, every lease is still renewed.
        calls.clear()
        before = await lease_rows(a)
        a.manager._last_renew = b.manager._last_renew = -1e18
        await tick([a, b], rounds=2)
        assert calls == []
        after = await lease_rows(a)
        assert all(after[cid][1] == before[cid][1] and after[cid][2] for cid in ids)
        # A new component is assigned and taken.
        (new,) = await add_components(a, 1, start=100)
        await tick([a, b], rounds=1)
        assert new in set(a.manager.epochs) | set(b.manager.epochs)
        assert {(await lease_rows(a))[new][0]} <= {a.manager.replica_id, b.manager.replica_id}
        # A disabled component is forgotten.
        gone = next(iter(a_held))
        async with a.session() as session:
            await session.execute(text("UPDATE components SET enabled = false WHERE id = :id"), {"id": gone})
        await a.manager.run_once()
        assert gone not in a.manager.epochs
        # A lease taken by someone else while the fleet is unchanged is lost on the next renewal.
        stolen = next(iter(set(b.manager.epochs)))
        async with a.session() as session:
            await session.execute(
                text(
                    "UPDATE component_leases SET replica_id = 'x', epoch = epoch + 1 WHERE component_id = :id"
                ),
                {"id": stolen},
            )
        calls.clear()
        b.manager._last_renew = -1e18
        await b.manager.run_once()
        assert stolen not in b.manager.epochs and b.manager.epoch_for(stolen) is None
        assert stolen in b.manager.desired
        # A replica leaving: the other recomputes and takes its share (after the leases are released).
        await b.manager.release_all()
        calls.clear()
        await a.manager.run_once()
        assert calls == [a.manager.replica_id]
        assert set(a.manager.epochs) == (set(ids) | {new}) - {gone, stolen}  # stolen: held by 'x'
