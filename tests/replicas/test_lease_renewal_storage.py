"""Renewing every lease (every ``renew_interval``, one row per component held) writes heap-only row
versions on Postgres: no index entries, and the dead versions are pruned in their page instead of
piling up for vacuum. At fillfactor 100 every renewal of a 20k fleet moved each row to another page
(new index entries, the table doubling between vacuums): a burst the API's requests queued behind."""

from __future__ import annotations

from sqlalchemy import text

from tests.replicas.conftest import add_components, replicas, tick

HOT_UPDATES = text("SELECT pg_stat_get_xact_tuples_hot_updated(CAST('component_leases' AS regclass))")
UPDATES = text("SELECT pg_stat_get_xact_tuples_updated(CAST('component_leases' AS regclass))")


async def test_renewals_rewrite_the_leases_in_their_own_pages(pg_url, tmp_path):
    async with replicas(pg_url, tmp_path, [None]) as (a,):
        await add_components(a, 600)
        await tick([a], rounds=1)  # takes them all (a first tick has nothing to renew)
        manager = a.manager
        assert len(manager.epochs) == 600
        ids = sorted(manager.epochs)
        epochs = [manager.epochs[cid] for cid in ids]
        # Two renewals in a row: a page keeps room for two new versions of each of its rows even when
        # a transaction open elsewhere keeps the older versions from being pruned meanwhile.
        for _ in range(2):
            async with a.session() as session:
                # This backend's counts not yet sent to the statistics (earlier transactions' too)
                # are included: the renewal's are the difference.
                updated0 = (await session.execute(UPDATES)).scalar_one()
                hot0 = (await session.execute(HOT_UPDATES)).scalar_one()
                lost = await manager.store.renew(session, manager.replica_id, ids, epochs, manager.ttl)
                assert lost == set()
                updated = (await session.execute(UPDATES)).scalar_one() - updated0
                hot = (await session.execute(HOT_UPDATES)).scalar_one() - hot0
            assert updated == 600
            assert hot == updated
