"""The result flush's lease fence on Postgres, lock by lock: it keeps another replica's take out until
the fenced writes commit, and it does not hold up the holder's own renewal (which, waiting behind a long
flush, used to hit its statement timeout and fail the whole lease tick)."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from tests.db_locks import waiting_on_a_lock
from tests.replicas.conftest import add_components, expire, lease_rows, replicas


async def test_renewal_goes_on_while_a_flush_holds_the_fence(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        epoch = a.manager.epochs[cid]
        async with a.session() as flush:  # a result flush in progress: fenced, not yet committed
            assert await a.manager.fence_writes(flush, {cid}) == {cid}
            async with a.session() as renewal:
                # A renewal that waited for the flush would give up here (lock timeout), not renew.
                await renewal.execute(text("SET LOCAL lock_timeout = '5s'"))
                lost = await a.manager.store.renew(renewal, a.manager.replica_id, [cid], [epoch], 3.0)
            assert lost == set()
            assert await a.manager.fence_writes(flush, {cid}) == {cid}
        rows = await lease_rows(a)
        assert rows[cid] == (a.manager.replica_id, epoch, True)


async def test_a_take_waits_for_the_fenced_writes_of_the_old_holder(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        epoch = a.manager.epochs[cid]
        # A's lease expires in the database (its renewals stopped) and A is no longer live.
        await expire(a)
        flush = a.session()
        session = await flush.__aenter__()
        try:
            # A's flush fenced its writes before the expiry was noticed by anyone.
            assert await a.manager.fence_writes(session, {cid}) == {cid}
            take = asyncio.create_task(b.manager.run_once())
            while not await waiting_on_a_lock(a.runtime.engine):
                assert not take.done(), take  # B must not get the lease while A's writes are in flight
                await asyncio.sleep(0.02)
            assert not take.done()
            await session.execute(
                text("UPDATE components SET description = 'written under the old lease' WHERE id = :id"),
                {"id": cid},
            )
        finally:
            await flush.__aexit__(None, None, None)  # commits A's fenced writes
        await take
        assert b.manager.epochs.get(cid) == epoch + 1
        rows = await lease_rows(b)
        assert rows[cid] == (b.manager.replica_id, epoch + 1, True)


async def test_a_claims_fence_does_not_wait_for_the_holders_renewal(pg_url, tmp_path):
    """Healing's claim fences its attempt on the lease row: a lease tick renewing every lease in one
    transaction must not hold up a reaction's claim (nor the claim the renewal)."""
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        epoch = a.manager.epochs[cid]
        async with a.session() as renewal:  # a lease tick in progress: renewed, not yet committed
            lost = await a.manager.store.renew(renewal, a.manager.replica_id, [cid], [epoch], 3.0)
            assert lost == set()
            async with a.session() as claim:
                # A fence that waited for the renewal would give up here (lock timeout), not fence.
                await claim.execute(text("SET LOCAL lock_timeout = '5s'"))
                assert await a.manager.fence(claim, cid) == epoch
        async with a.session() as claim:  # and the other way round: a fenced claim, then a renewal
            assert await a.manager.fence(claim, cid) == epoch
            async with a.session() as renewal:
                await renewal.execute(text("SET LOCAL lock_timeout = '5s'"))
                lost = await a.manager.store.renew(renewal, a.manager.replica_id, [cid], [epoch], 3.0)
            assert lost == set()
        rows = await lease_rows(a)
        assert rows[cid] == (a.manager.replica_id, epoch, True)


async def test_a_take_waits_for_the_fenced_claim_of_the_old_holder(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None, None]) as (a, b):
        (cid,) = await add_components(a, 1)
        await a.manager.run_once()
        epoch = a.manager.epochs[cid]
        claim = a.session()
        session = await claim.__aenter__()
        try:
            assert await a.manager.fence(session, cid) == epoch  # A's claim, fenced before the expiry
            await expire(a)  # A's lease expires in the database (its renewals stopped)
            take = asyncio.create_task(b.manager.run_once())
            while not await waiting_on_a_lock(a.runtime.engine):
                assert not take.done(), take  # B must not get the lease while A's claim is in flight
                await asyncio.sleep(0.02)
            assert not take.done()
        finally:
            await claim.__aexit__(None, None, None)  # commits A's claim
        await take
        assert b.manager.epochs.get(cid) == epoch + 1
