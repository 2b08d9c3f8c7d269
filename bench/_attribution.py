"""Where a reaction's time goes (bench/healing.py --attribute): stage stamps on the real path, event
loop stalls with what the loop was running, and the cyclic GC's pauses.

Nothing here is part of the product: the stamps are taken by wrapping, for the bench's run only,
the functions a reaction passes through (`install`), and every stamp is wall-clock (`time.time()`)
so it compares with the probe result's `observed_at` and the restart command's own stamp.

Stages, each measured from the previous one:
  buffered   the deciding result handed to the writer (the probe's own time before it)
  flush      the flush that writes it entered (flusher woken, or a flush already running finished)
  fenced     its transaction began and the lease fence returned (Postgres: FOR SHARE on the lease
             rows, which waits for a lease tick's UPDATE of the same rows to commit)
  locked     that flush holds the writer's lock and its transaction began (waits behind a flush)
  written    its statements and event subscribers ran
  committed  its commit (the healing hand-over fires on it)
  woken      the healing loop took the incident (`react`)
  deciding   its decision began (waits for the decision lock: earlier incidents, periodic steps)
  claimed    the claim committed
  marked     the acting marker committed (a tree that commits it with the claim: empty)
  acting     the action's task started
  spawning   the command is being started
  stamp      the command's first line ran
"""

from __future__ import annotations

import contextvars
import gc
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

STAGES = [
    "buffered",
    "flush",
    "fenced",
    "locked",
    "written",
    "committed",
    "woken",
    "deciding",
    "claimed",
    "marked",
    "acting",
    "spawning",
    "stamp",
]
_incident = contextvars.ContextVar("bench_incident", default=None)
_flush = contextvars.ContextVar("bench_flush", default=None)


class Attribution:
    def __init__(self) -> None:
        self.by_result: dict[tuple[int, float], dict[str, float]] = {}  # (component, observed_at) -> stamps
        self.by_incident: dict[int, dict[str, float]] = defaultdict(dict)
        self.stalls: list[tuple[float, float]] = []  # (start, end) of loop stalls over STALL_S
        self.stall_sites: list[tuple[float, str]] = []  # (when, where the loop was) sampled during stalls
        self.gc_pauses: list[tuple[float, float, int]] = []  # (start, end, generation)
        self.handler_costs: dict[str, list[tuple[float, int]]] = defaultdict(list)  # (seconds, statements)
        self._gc_start = 0.0
        self.heap = (0, 0)  # objects the cyclic GC scans, objects frozen (at steady state)
        self._beat = time.monotonic()
        self._stop = threading.Event()
        self._tasks: list = []
        self.fences: list[tuple[float, float]] = []  # (start, end) of each flush's lease fence
        self.renewals: list[tuple[float, float]] = []  # (renew statement start, its tick's commit)
        self.lock_samples: list[tuple[float, int, int]] = []  # Postgres: (when, fences, others waiting)
        # SQLite: every hold of the write lock, (owner, waited s, start, end, statements under it)
        self.holds: list[tuple[str, float, float, float, int]] = []
        self.inline: list[float] = []  # SQLite: statements run on the event loop's thread, their time

    # ------------------------------------------------------------------ install
    def install(self, guard, victim_ids: set[int]) -> None:
        import asyncio

        import app.healing.acting as acting_mod
        import app.healing.attempts as attempts_mod
        import app.healing.deciding as deciding_mod
        import app.healing.engine as engine_mod
        import app.healing.strategies.command as command_mod
        import app.monitoring.result_writer as writer_mod

        writer = guard.monitoring.scheduler.writer
        engine = guard.healing.engine
        now = time.time

        add = writer.add

        def add_stamped(observation):
            if observation.component_id in victim_ids and observation.result.outcome.value != "up":
                key = (observation.component_id, round(observation.result.observed_at.timestamp(), 3))
                self.by_result[key] = {"buffered": now()}
            return add(observation)

        writer.add = add_stamped

        flush_locked = writer._flush_locked

        async def flush_locked_stamped():
            stamps = {"flush": now()}
            _flush.set(stamps)
            return await flush_locked()

        writer._flush_locked = flush_locked_stamped

        write_batch = writer_mod.write_batch

        async def write_batch_stamped(session, items, *args, **kwargs):
            stamps = _flush.get()
            if stamps is None or "locked" in stamps:  # a flush not entered through `_flush_locked`
                stamps = {"flush": now()}
                _flush.set(stamps)
            stamps["locked"] = now()
            applied = await write_batch(session, items, *args, **kwargs)
            stamps["written"] = now()
            stamps["batch"] = len(items)
            return applied

        writer_mod.write_batch = write_batch_stamped

        hand_over = engine.wake.hand_over

        def hand_over_stamped(incident_id):
            # Called on the commit of the transaction that opened (or worsened) the incident: when that
            # is a flush, its own stamps are the incident's.
            stamps = self.by_incident[incident_id]
            if "committed" not in stamps:
                stamps["committed"] = now()
                stamps.update(_flush.get() or {})
            return hand_over(incident_id)

        engine.wake.hand_over = hand_over_stamped

        react = engine.react

        async def react_stamped(incident_ids):
            incident_ids = list(incident_ids)
            for incident_id in incident_ids:
                self.by_incident[incident_id].setdefault("woken", now())
            return await react(incident_ids)

        engine.react = react_stamped

        decide = engine_mod.decide

        async def decide_stamped(engine, incident_id):
            self.by_incident[incident_id].setdefault("deciding", now())
            token = _incident.set(incident_id)
            try:
                return await decide(engine, incident_id)
            finally:
                _incident.reset(token)

        engine_mod.decide = decide_stamped

        commit_claim = attempts_mod.commit_claim

        async def commit_claim_stamped(session):
            ok = await commit_claim(session)
            if (incident_id := _incident.get()) is not None:
                self.by_incident[incident_id].setdefault("claimed", now())
            return ok

        attempts_mod.commit_claim = commit_claim_stamped

        # A tree whose claim commits its acting marker has no separate marker step ("marked" stays empty).
        mark_acting_in = getattr(deciding_mod, "mark_acting_in", None)

        async def mark_acting_in_stamped(session, engine, claim):
            ok = await mark_acting_in(session, engine, claim)
            if (incident_id := _incident.get()) is not None:
                self.by_incident[incident_id].setdefault("marked", now())
            return ok

        if mark_acting_in is not None:
            deciding_mod.mark_acting_in = mark_acting_in_stamped

        act = acting_mod.act

        async def act_stamped(engine, claim):
            incident_id = int(claim.ctx.incident_id)
            self.by_incident[incident_id].setdefault("acting", now())
            return await act(engine, claim)

        acting_mod.act = act_stamped

        run_command = command_mod.run_command

        async def run_command_stamped(argv, **kwargs):
            incident = (kwargs.get("env") or {}).get("PIPELINE_GUARD_INCIDENT")
            if incident is not None:
                self.by_incident[int(incident)].setdefault("spawning", now())
            return await run_command(argv, **kwargs)

        command_mod.run_command = run_command_stamped

        self._install_lease_stamps(guard)
        if guard.engine.dialect.name == "sqlite":
            self._install_write_lock_holds()

        from sqlalchemy import event

        statements = [0]

        def count_statement(*_args, **_kwargs):
            statements[0] += 1

        event.listen(guard.engine.sync_engine, "before_cursor_execute", count_statement)
        bus = guard.events
        for handlers in bus._handlers.values():
            for i, handler in enumerate(handlers):
                handlers[i] = self._timed(handler, statements)

        self.heap = (len(gc.get_objects()), gc.get_freeze_count())
        gc.callbacks.append(self._on_gc)
        self._tasks.append(asyncio.get_running_loop().create_task(self._ticker()))
        threading.Thread(target=self._watchdog, args=(threading.get_ident(),), daemon=True).start()

    def _install_lease_stamps(self, guard) -> None:
        """The lease fence of every flush, and the lease ticks that renew (their transaction holds the
        renewed rows' locks from the renewal to its commit)."""
        leases = guard.replicas.leases
        store = leases.store
        now = time.time
        fence_writes = store.fence_writes

        async def fence_writes_stamped(session, me, epochs):
            t0 = now()
            try:
                return await fence_writes(session, me, epochs)
            finally:
                t1 = now()
                self.fences.append((t0, t1))
                stamps = _flush.get()
                if stamps is not None and "locked" not in stamps:
                    stamps["fenced"] = t1

        store.fence_writes = fence_writes_stamped
        renew = store.renew
        renewing: list[float] = []

        async def renew_stamped(*args, **kwargs):
            renewing.append(now())
            return await renew(*args, **kwargs)

        store.renew = renew_stamped
        if guard.engine.dialect.name == "postgresql":
            import asyncio

            self._tasks.append(asyncio.get_running_loop().create_task(self._lock_waits(guard.engine.url)))
        run_once = leases.run_once

        async def run_once_stamped():
            try:
                return await run_once()
            finally:
                if renewing:
                    self.renewals.append((renewing.pop(), now()))
                    renewing.clear()

        leases.run_once = run_once_stamped

    def _install_write_lock_holds(self) -> None:
        """SQLite: who holds the write lock and how long. A hold begins when a transaction's first write
        statement returns (its wait for the lock before that is `waited`) and ends at its commit or
        rollback; the owner is the task that runs the transaction (its coroutine's name)."""
        import asyncio

        import app.db.sqlite_driver as driver_mod

        if not hasattr(driver_mod, "_run"):
            return

        run = driver_mod._run
        owners: dict[int, str] = {}
        open_holds: dict[int, list] = {}  # connection -> [owner, waited, start, statements]
        writes = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN IMMEDIATE")

        loop_thread = threading.get_ident()

        def run_timed(conn, operation, parameters, many):
            key = id(conn)
            hold = open_holds.get(key)
            t0 = time.time()
            result = run(conn, operation, parameters, many)
            if threading.get_ident() == loop_thread:
                self.inline.append(time.time() - t0)
            if hold is not None:
                hold[3] += 1
            elif conn.in_transaction and operation.lstrip()[:15].upper().startswith(writes):
                t1 = time.time()
                open_holds[key] = [owners.get(key, "?"), t1 - t0, t1, 1]
            return result

        def ended(conn) -> None:
            hold = open_holds.pop(id(conn), None)
            if hold is not None:
                self.holds.append((hold[0], hold[1], hold[2], time.time(), hold[3]))

        driver_mod._run = run_timed
        trip = driver_mod.OneTripCursor._trip

        async def trip_owned(cursor, operation, parameters, many):
            task = asyncio.current_task()
            coro = task.get_coro() if task is not None else None
            name = getattr(coro, "__qualname__", "?")
            if task is not None and not task.get_name().startswith("Task-"):
                name = f"{task.get_name().rstrip('0123456789').rstrip(':')} ({name})"
            owners[id(cursor._connection._conn)] = name
            return await trip(cursor, operation, parameters, many)

        driver_mod.OneTripCursor._trip = trip_owned
        for name in ("commit", "rollback"):
            original = getattr(driver_mod.OneTripConnection, name)

            def wrapped(adapter, _original=original):
                try:
                    return _original(adapter)
                finally:
                    ended(adapter._connection._conn)

            setattr(driver_mod.OneTripConnection, name, wrapped)

    async def _lock_waits(self, url) -> None:
        """Every 10 ms, from a connection of its own: the guard's statements waiting for a lock (pg_stat_
        activity), the lease fences apart (what, not how long: a fence's time is in `fences`)."""
        import asyncio

        import asyncpg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        conn = await asyncpg.connect(dsn)
        try:
            while True:
                row = await conn.fetchrow(
                    "SELECT count(*) FILTER (WHERE query LIKE '%FOR SHARE%') AS fences, "
                    "count(*) FILTER (WHERE query NOT LIKE '%FOR SHARE%') AS others "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'pipeline-guard' AND wait_event_type = 'Lock'"
                )
                self.lock_samples.append((time.time(), row["fences"], row["others"]))
                await asyncio.sleep(0.01)
        finally:
            await conn.close()

    def _timed(self, handler, statements: list[int]):
        name = getattr(handler, "__qualname__", repr(handler))

        async def timed(event, session):
            t0, n0 = time.perf_counter(), statements[0]
            try:
                return await handler(event, session)
            finally:
                self.handler_costs[f"{type(event).__name__} -> {name}"].append(
                    (time.perf_counter() - t0, statements[0] - n0)
                )

        return timed

    def uninstall(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    # ------------------------------------------------------------------ loop stalls and GC
    TICK_S = 0.005
    STALL_S = 0.010  # lateness of the 5 ms ticker counted as a stall

    async def _ticker(self) -> None:
        import asyncio

        while True:
            expected = time.monotonic() + self.TICK_S
            await asyncio.sleep(self.TICK_S)
            late = time.monotonic() - expected
            self._beat = time.monotonic()
            if late > self.STALL_S:
                end = time.time()
                self.stalls.append((end - late, end))

    def _watchdog(self, loop_thread: int) -> None:
        """Samples the loop thread's stack while the ticker is late: what kept the loop busy."""
        while not self._stop.wait(0.004):
            if time.monotonic() - self._beat > self.TICK_S + self.STALL_S:
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    self.stall_sites.append((time.time(), _where(frame)))

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_start = time.time()
        else:
            self.gc_pauses.append((self._gc_start, time.time(), info["generation"]))

    # ------------------------------------------------------------------ report
    def reactions(self, opened: dict[int, tuple[int, float]], stamps: dict[int, float]) -> list[dict]:
        """Per reaction (incident with a stamp): the stage times, from `opened` (incident -> (component,
        observed_at epoch)) and the commands' stamps."""
        out = []
        for incident_id, stamp in stamps.items():
            if incident_id not in opened:
                continue
            cid, t0 = opened[incident_id]
            row = {"incident": incident_id, "observed": t0, "stamp": stamp}
            row.update(self.by_result.get((cid, round(t0, 3)), {}))
            row.update(self.by_incident.get(incident_id, {}))
            buffered = row.get("buffered", row["observed"])
            if row.get("locked", row["stamp"]) < buffered:
                # The incident's transaction was not the flush that wrote its deciding result.
                for stage in ("flush", "fenced", "locked", "written", "batch"):
                    row.pop(stage, None)
            elif row.get("flush", row["stamp"]) < buffered:
                row["flush"] = buffered  # buffered while that flush waited for the lock: taken by it
            out.append(row)
        return out

    def report(self, rows: list[dict], t_from: float, t_to: float, out=print) -> None:
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r["stamp"] - r["observed"])
        n_slow = max(1, round(len(rows) * 0.05))
        slow = rows[-n_slow:]
        out(f"  attribution: stage durations in ms (each from the stage before); {len(rows)} reactions")
        header = "  " + " ".join(f"{s[:9]:>9s}" for s in STAGES) + "    total  batch  stall   gc2"
        out("             " + header)
        for label, group in (("p50 all", rows), ("p99 all", rows)):
            q = 0.5 if label.startswith("p50") else 0.99
            cells = []
            for i in range(len(STAGES)):
                values = [d for r in group if (d := _delta(r, STAGES, i)) is not None]
                cells.append(f"{_pct(values, q) * 1000:9.1f}" if values else f"{'-':>9s}")
            total = _pct([r["stamp"] - r["observed"] for r in group], q) * 1000
            out(f"  {label:11s}" + "  " + " ".join(cells) + f"  {total:7.1f}")
        # The healing side alone (decision begun -> the command's first line), apart from monitoring's flush
        # and the hand-over before it: the part a change to the decision moves, whatever the flush did.
        for first, last in (("deciding", "stamp"), ("committed", "deciding")):
            spans = sorted((r[last] - r[first]) * 1000 for r in rows if first in r and last in r)
            if spans:
                out(
                    f"  {first} -> {last}: p50 {_pct(spans, 0.5):.1f}  p95 {_pct(spans, 0.95):.1f}  "
                    f"p99 {_pct(spans, 0.99):.1f}  max {spans[-1]:.1f} ms  (n={len(spans)})"
                )
        for r in reversed(slow):
            cells = []
            for i in range(len(STAGES)):
                d = _delta(r, STAGES, i)
                cells.append(f"{d * 1000:9.1f}" if d is not None else f"{'-':>9s}")
            stall = self._overlap(self.stalls, r["observed"], r["stamp"])
            gc2 = self._overlap([(a, b) for a, b, g in self.gc_pauses if g == 2], r["observed"], r["stamp"])
            out(
                f"  inc {r['incident']:<7d}  "
                + " ".join(cells)
                + f"  {(r['stamp'] - r['observed']) * 1000:7.1f}  {r.get('batch', '-')!s:>5s}"
                + f"  {stall * 1000:5.1f}  {gc2 * 1000:4.1f}"
            )
        span = max(t_to - t_from, 1e-9)
        stalls = [(a, b) for a, b in self.stalls if t_from <= b <= t_to]
        lengths = sorted((b - a) * 1000 for a, b in stalls)
        out(
            f"  loop stalls over {self.STALL_S * 1000:.0f} ms (5 ms ticker): {len(stalls)} in {span:.0f} s, "
            f"{sum(lengths) / span / 10:.2f} % of the time"
            + (f", p50 {statistics.median(lengths):.1f} ms, max {lengths[-1]:.1f} ms" if lengths else "")
        )
        scanned, frozen = self.heap
        out(f"  heap at steady state: {scanned} objects scanned by a full collection, {frozen} frozen")
        for gen in (0, 1, 2):
            pauses = sorted((b - a) * 1000 for a, b, g in self.gc_pauses if g == gen and t_from <= b <= t_to)
            if pauses:
                out(
                    f"  gc generation {gen}: {len(pauses)} collections, "
                    f"p50 {statistics.median(pauses):.2f} ms, max {pauses[-1]:.1f} ms, "
                    f"total {sum(pauses):.0f} ms"
                )
        fences = [(a, b) for a, b in self.fences if t_from <= b <= t_to]
        if fences:
            waits = sorted((b - a) * 1000 for a, b in fences)
            renewals = [(a, b) for a, b in self.renewals if t_from <= b <= t_to]
            ticks = sorted((b - a) * 1000 for a, b in renewals) or [0.0]
            out(
                f"  lease fences (transaction begun + fence): {len(fences)}, ms p50 {_pct(waits, 0.5):.1f} "
                f"p99 {_pct(waits, 0.99):.1f} max {waits[-1]:.1f}; renewing lease ticks: {len(renewals)}, "
                f"renewal->commit p50 {_pct(ticks, 0.5):.1f} max {ticks[-1]:.1f} ms"
            )
            for over in (0.02, 0.05):
                slow = [(a, b) for a, b in fences if (b - a) > over]
                behind = sum(1 for a, b in slow if any(ra < b and a < rb for ra, rb in renewals))
                out(f"    over {over * 1000:.0f} ms: {len(slow)}, {behind} of them beside a renewing tick")
            samples = [(t, f, o) for t, f, o in self.lock_samples if t_from <= t <= t_to]
            if samples:
                out(
                    f"    pg_stat_activity every 10 ms: {len(samples)} samples; a fence waiting for a lock: "
                    f"{sum(1 for _, f, _ in samples if f)}, another statement of the guard in "
                    f"{sum(1 for _, _, o in samples if o)}"
                )
        out("  event subscribers inside the flush (all flushes): calls, ms p50/p99, statements per call")
        if self.inline:
            spans = sorted(d * 1000 for d in self.inline)
            out(
                f"  SQLite statements on the event loop's thread: {len(spans)}, p50 {_pct(spans, 0.5):.2f}"
                f"  p99 {_pct(spans, 0.99):.2f}  max {spans[-1]:.1f} ms, total {sum(spans):.0f} ms"
            )
        holds = [h for h in self.holds if t_from <= h[3] <= t_to]
        if holds:
            out(
                "  SQLite write lock by owner: holds, held ms p50/p99/max, waited ms p50/p99/max, "
                "statements p50/max"
            )
            by_owner: dict[str, list] = defaultdict(list)
            for h in holds:
                by_owner[h[0]].append(h)
            for owner, hs in sorted(by_owner.items(), key=lambda kv: -sum(h[3] - h[2] for h in kv[1])):
                held = sorted((h[3] - h[2]) * 1000 for h in hs)
                waited = sorted(h[1] * 1000 for h in hs)
                stmts = sorted(h[4] for h in hs)
                out(
                    f"    {len(hs):6d}  {_pct(held, 0.5):6.1f} {_pct(held, 0.99):6.1f} {held[-1]:6.1f}"
                    f"  {_pct(waited, 0.5):6.1f} {_pct(waited, 0.99):6.1f} {waited[-1]:6.1f}"
                    f"  {_pct(stmts, 0.5):4d} {stmts[-1]:5d}  {owner}"
                )
        for name, costs in sorted(self.handler_costs.items(), key=lambda kv: -sum(c[0] for c in kv[1])):
            ms = [c[0] * 1000 for c in costs]
            out(
                f"    {len(costs):5d}  {_pct(ms, 0.5):6.1f} {_pct(ms, 0.99):6.1f}  "
                f"{statistics.mean(c[1] for c in costs):4.1f}  {name}"
            )
        sites = Counter(where for t, where in self.stall_sites if t_from <= t <= t_to)
        if sites:
            out("  where the loop was during stalls (4 ms samples):")
            for where, count in sites.most_common(8):
                out(f"    {count:5d}  {where}")

    @staticmethod
    def _overlap(spans: list[tuple[float, float]], start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in spans)


def _delta(row: dict, stages: list[str], i: int) -> float | None:
    stage = stages[i]
    if stage not in row:
        return None
    for previous in reversed(["observed", *stages[:i]]):
        if previous in row:
            return row[stage] - row[previous]
    return None


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _where(frame) -> str:
    """The innermost frame of the guard's own code (and the innermost frame overall when elsewhere)."""
    inner = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"
    f = frame
    while f is not None:
        filename = f.f_code.co_filename
        if "/app/" in filename and "site-packages" not in filename:
            own = f"app/{filename.rsplit('/app/', 1)[1]}:{f.f_code.co_name}"
            return own if own.endswith(inner.split(":")[1]) else f"{own} > {inner}"
        f = f.f_back
    return inner
