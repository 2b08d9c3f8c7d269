"""The database away at the moment the healing loop starts: the start is retried, readiness says so
meanwhile, and healing works once the database is back (it used to leave the loop dead for the life of
the process, while /health stayed green).

The story: a guard died while deciding (its attempt left `running`, its lease run out, the action never
started). When a guard comes back, its healing loop starts by settling that attempt, and at that very
moment another process holds the database, right after the guard's own start checks passed (inside the
lifespan, where the loops are built): SQLite, a writer holds the write lock past the busy timeout
(the settling write fails); Postgres, a transaction holds an ACCESS EXCLUSIVE lock on the attempts
table (the start's read runs past the statement timeout).
"""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy.engine import make_url

from tests.conftest import _asyncpg_dsn, make_settings, running_guard
from tests.healing.conftest import Healing, count_lines, touch_argv, wait_until
from tests.healing.test_attempt_leases import _left_behind

SQLITE_HOLDER = """
import sqlite3, sys
holder = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
holder.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
holder.execute("ROLLBACK")
holder.close()
"""

POSTGRES_HOLDER = """
import asyncio, sys
import asyncpg

async def main():
    conn = await asyncpg.connect(sys.argv[1])
    async with conn.transaction():
        await conn.execute("LOCK TABLE healing_attempts IN ACCESS EXCLUSIVE MODE")
        print("locked", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await conn.close()

asyncio.run(main())
"""


class Holder:
    """Another process that makes the guard's database unusable until ``release()``."""

    def __init__(self, db_url: str):
        url = make_url(db_url)
        if url.get_backend_name() == "sqlite":
            code, target = SQLITE_HOLDER, url.database
        else:
            code, target = POSTGRES_HOLDER, _asyncpg_dsn(db_url)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, target], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        assert line.strip() == "locked", line

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


async def test_healing_loop_start_is_retried_after_a_database_outage(db_url, tmp_path):
    from app.healing.loop import HealingLoop

    holders: list[Holder] = []

    def build(rt):
        # The guard's start checks have passed; the database goes away before the loop starts.
        holders.append(Holder(db_url))
        return [HealingLoop(rt.core, rt.healing.engine)]

    settings = make_settings(
        db_url,
        tmp_path,
        healing={"command_actions_enabled": True, "max_concurrent": 3, "max_concurrent_per_group": 2},
        database={"statement_timeout": 1, "pool_timeout": 2},
    )
    marker = tmp_path / "healed"
    async with running_guard(settings) as before:  # the guard that died while deciding
        h = Healing(before)
        await h.add_component("w", {"strategies": [{"kind": "restart", "argv": touch_argv(marker)}]})
        left = await _left_behind(h, await h.open_incident("w"), acted=False, owner="gone-host:1")
    try:
        async with running_guard(settings, build_services=build) as guard:
            [loop] = guard.runtime.services

            async def starting():
                r = await guard.client.get("/ready")
                background = (
                    r.json()["error"]["details"]["checks"]["background"] if r.status_code == 503 else {}
                )
                return background.get("starting") == ["healing"] and loop.start_failures >= 1

            await wait_until(starting, timeout=30, interval=0.1)
            assert loop.running and loop.iterations == 0
            holders[0].release()

            async def ready():
                return (await guard.client.get("/ready")).status_code == 200 and loop.iterations > 0

            await wait_until(ready, timeout=30, interval=0.1)
            # The attempt left behind is settled (its action never started: decided again) and healed.
            await wait_until(lambda: count_lines(marker) == 1, timeout=30)
            h = Healing(guard)
            await guard.runtime.healing.engine.drain(timeout=30)
            states = {a.id: a.state for a in await h.attempts(component="w")}
            assert states[left] != "running" and len(states) == 2, states
        assert count_lines(marker) == 1
    finally:
        for holder in holders:
            holder.release()
