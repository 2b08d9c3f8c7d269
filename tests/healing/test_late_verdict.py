"""A verification settled late (a busy guard: the periodic pass runs late, results reach the
database late) judges what the checks will say, not the order in which the pieces arrived: a batch
job's rerun that started since the action and already finished, its finish not yet read by a check,
holds the verification open like a rerun still running (docs/LIFECYCLE.md rule 12)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.db.models.healing import HealingAttempt
from app.db.types import utcnow
from tests.healing.conftest import touch_argv
from tests.monitoring.runs import ping_token

BATCH = {"check": {"kind": "heartbeat", "period_s": 60, "max_runtime_s": 600}}


async def _late(healing, name: str, pings: list[str]) -> HealingAttempt:
    """The rerun's ``pings`` (``start``, ``0``: success...) arrive after its action started; the
    periodic pass that settles the verification comes after its deadline."""
    guard = healing.guard
    await healing.add_component(name, {"strategies": [{"kind": "restart", "argv": touch_argv(name)}]})
    r = await guard.client.patch(
        f"/api/v1/components/{name}", headers=await guard.headers("admin"), json=BATCH
    )
    assert r.status_code == 200, r.text
    token = await ping_token(guard, name)
    await healing.open_incident(name)
    assert len(await healing.step()) == 1  # the rerun is started and its attempt is being verified
    for ping in pings:
        assert (await guard.client.get(f"/ping/{token}/{ping}")).status_code == 200
    async with guard.session() as session:
        await session.execute(
            update(HealingAttempt)
            .where(HealingAttempt.state == "verifying")
            .values(verify_deadline=utcnow() - timedelta(seconds=1))
        )
    await healing.step()
    [attempt] = await healing.attempts()
    return attempt


async def test_a_rerun_that_ended_before_the_late_pass_waits_for_its_check(healing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempt = await _late(healing, "nightly", ["start", "0"])
    assert attempt.state == "verifying", attempt.detail
    assert attempt.verify_deadline > utcnow() + timedelta(seconds=500)  # the run's allowed end
    assert "rerun_started_at" in attempt.decision


async def test_a_rerun_still_running_holds_it_as_before(healing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempt = await _late(healing, "hourly", ["start"])
    assert attempt.state == "verifying", attempt.detail
    assert attempt.verify_deadline > utcnow() + timedelta(seconds=500)


async def test_no_run_since_the_action_fails_at_the_deadline(healing, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attempt = await _late(healing, "silent", [])
    assert attempt.state == "failed" and "verification timed out" in attempt.detail
