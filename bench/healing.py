"""Healing benchmark: detection-to-action latency and end-to-end time to recover.

1. Detection → action: an in-process guard (SQLite, the real HealingLoop with its wake-up) receives
   IncidentOpened the way monitoring publishes it (inside the transaction that records the check
   result that crossed the threshold, ``at`` = that result's time); we measure until the strategy's
   ``execute`` starts. p50/p99 over many incidents, beside the 100 ms target.
2. Time to recover: the real demo (flaky worker + `pipeline-guard serve`), crash → verified healthy,
   beside the bound period × failure_threshold + action time + 1 period.

    .venv/bin/python bench/healing.py [--incidents 300] [--demo-runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.healing.strategies.base import ActionContext, ActionResult, Strategy


class StartStamp(Strategy):
    kind: ClassVar[str] = "bench_stamp"

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.events: dict[str, asyncio.Event] = {}

    def validate(self, params):
        return {}

    async def execute(self, ctx: ActionContext) -> ActionResult:
        self.started[ctx.incident_id] = time.time()
        self.events.setdefault(ctx.incident_id, asyncio.Event()).set()
        return ActionResult(True, "stamped")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def detection_to_action(n: int, tmp: Path) -> dict:
    from app.config import Settings
    from app.db.migrate import upgrade_sync
    from app.db.models import Component
    from app.db.session import session_scope
    from app.events import IncidentClosed, IncidentOpened
    from app.healing.strategies.registry import default_registry
    from app.healing.wiring import build_loops
    from app.main import create_app

    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    await asyncio.to_thread(upgrade_sync, url)
    settings = Settings(env="test", database_url=url, data_dir=tmp / "var",
                        security={"secret_key": "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"},
                        healing={"strategies": ["bench_stamp"], "max_concurrent": 50})
    app = create_app(settings, build_services=build_loops)
    stamp = StartStamp()
    latencies: list[float] = []
    async with app.router.lifespan_context(app):
        state = app.state.guard
        default_registry().register(stamp)
        recovery = {"strategies": [{"kind": "bench_stamp", "params": {}}], "cooldown": 0, "backoff_initial": 0,
                    "verify_timeout": 3600}
        async with session_scope(state.sessionmaker) as session:
            for i in range(20):
                session.add(Component(name=f"bench-{i}", labels={}, recovery=recovery))
        for i in range(n):
            component = f"bench-{i % 20}"
            incident_id = 10_000 + i
            event = stamp.events.setdefault(str(incident_id), asyncio.Event())
            async with session_scope(state.sessionmaker) as session:
                at = datetime.now(UTC)  # the check result that crossed the threshold
                await state.events.publish(IncidentOpened(
                    component=component, component_id=0, incident_id=incident_id, status="critical",
                    reason="bench", at=at), session)
            await asyncio.wait_for(event.wait(), 10)
            latencies.append(stamp.started[str(incident_id)] - at.timestamp())
            await asyncio.sleep(0.01)  # the attempt is recorded as verifying
            async with session_scope(state.sessionmaker) as session:
                await state.events.publish(IncidentClosed(
                    component=component, component_id=0, incident_id=incident_id, reason="bench",
                    at=datetime.now(UTC)), session)
    return {"n": n, "p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000, "mean_ms": statistics.fmean(latencies) * 1000}


def time_to_recover(runs: int) -> list[dict]:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "examples" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    results = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
            timeline = demo.run_demo(Path(tmp), how="crash", out=lambda _line: None, timeout=60)
        attempt = timeline.get("attempt") or {}
        results.append({
            "break_to_healthy_s": timeline.get("healthy"),
            "ttr_s": attempt.get("time_to_recover_s"),
            "action_s": (attempt.get("decision") or {}).get("action_duration_s"),
            "resolved": "alert_resolved" in timeline.get("seen", []),
        })
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=300)
    parser.add_argument("--demo-runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        lat = asyncio.run(detection_to_action(args.incidents, Path(tmp)))
    print(f"detection -> action over {lat['n']} incidents (SQLite, in-process loop with wake-up):")
    print(f"  p50 {lat['p50_ms']:.1f} ms   p99 {lat['p99_ms']:.1f} ms   max {lat['max_ms']:.1f} ms"
          f"   target p99 <= 100 ms  (ratio p99/target {lat['p99_ms'] / 100:.2f})")
    if args.demo_runs:
        period, threshold = 1.0, 2  # examples/demo.yaml
        print(f"time to recover, demo worker crash ({args.demo_runs} runs; check period {period:g} s, "
              f"failure_threshold {threshold}):")
        for r in time_to_recover(args.demo_runs):
            if r["break_to_healthy_s"] is None or r["action_s"] is None:
                print(f"  run did not heal: {r}")
                continue
            bound = period * threshold + r["action_s"] + period
            print(f"  crash -> verified healthy {r['break_to_healthy_s']:.2f} s (incident -> healthy {r['ttr_s']:.2f} s)"
                  f"   bound period*threshold + action + period = {bound:.2f} s"
                  f"   (ratio {r['break_to_healthy_s'] / bound:.2f}; alert resolved: {r['resolved']})")


if __name__ == "__main__":
    main()
