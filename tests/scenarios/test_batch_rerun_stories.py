"""Healing a batch job (a heartbeat component) by rerunning it: the verification judges only the runs
after the action (docs/LIFECYCLE.md rule 12). Each story is a real job script (``batch_job.py``) that
pings its URL with curl, guarded by a real ``pipeline-guard serve``; its recovery command starts a
rerun in the background and returns at once, and the rerun takes longer than the policy's 1 s
``grace_period``:

- rerun-slow: the rerun works for 4 s and then pings success: the heal is verified by that ping; one
  rerun, never two runs at once (the ping from before the action, a failure, is not read again).
- rerun-long: the rerun pings ``/start`` and succeeds after 6 s, past the policy's 3 s
  ``verify_timeout`` but within the check's ``max_runtime``: "running" until then, not verified by its
  ``/start`` nor failed at the deadline; verified by its success, one rerun.
- rerun-fails: the rerun pings ``/start`` and ends with exit code 2: that attempt fails on that ping
  (not before, not verified by the ``/start``), the second rerun heals; one incident, never two runs
  at once.
- rerun-fails-fast: the policy's grace is long (60 s) and the rerun pings ``/fail`` at once: that
  ping fails the attempt (a rerun that said it failed is not start-up noise waited out by the grace),
  and the second rerun starts before the grace would have ended and heals; one incident.
- rerun-waited: the recovery command runs the job in the foreground (``rerun-wait``, exit 0 whatever
  the run reported): its ``/fail``, sent while the action runs, fails the attempt once the action
  ended, within the long grace; the second run, also within its action, heals.
- rerun-too-short: the rerun pings ``/start`` and success at once, shorter than the check's
  ``min_runtime``: as final as a ``/fail``, that success fails the attempt within the long grace, and
  the second rerun (of a normal length) heals; one incident.
- rerun-after-stuck: a run pinged ``/start`` and hangs past ``max_runtime``; the rerun pings only its
  success: the heal is verified by it (the time since the stuck run's ``/start`` is no duration of
  the rerun), one rerun, and the job stays healthy after the heal.
- rerun-late-fail: the job names its runs (``?rid=``); a run pinged ``/start`` and hangs past
  ``max_runtime``; the recovery action's rerun starts beside it, and the stuck run's ``/fail`` arrives
  after the action started, before the rerun succeeds: stored but not judged (the guard answers so),
  the heal is verified by the rerun, one rerun, one page (firing, then resolved), within a long grace
  that a ``/fail`` read as the rerun's would have ended at once.
- rerun-late-fail-sdk: the same, the job a Python one reporting through the SDK's ``job()``, which
  names each run itself: its late ``fail`` judges nothing either.
- rerun-silent: the rerun never pings: the attempt fails once its verification window is over (not
  at the end of the grace), the component leaves ``recovering`` and a human is told.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.scenarios.harness import GuardProcess, NotificationSink, guard_config, parse_time
from tests.scenarios.stories import Story, tell

pytestmark = [pytest.mark.scenarios, pytest.mark.timeout(300)]

JOB = Path(__file__).resolve().with_name("batch_job.py")


class BatchStory(Story):
    """One heartbeat-checked batch job, rerun by its recovery command."""

    job = "batch"
    PLAN: tuple[str, ...] = ()
    CHECK: dict = {}
    POLICY: dict = {}
    RERUN = "rerun"  # the recovery command: batch_job.py rerun (background) or rerun-wait (foreground)

    @property
    def dir(self) -> Path:
        return self.root / self.job

    def components(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "plan").write_text("\n".join(self.PLAN) + "\n")
        check = {
            "kind": "heartbeat",
            "period_s": 30,
            "grace_s": 5,
            "interval": 1,
            "failure_threshold": 2,
            "success_threshold": 1,
            **self.CHECK,
        }
        policy = {
            "strategies": [
                {"kind": "restart", "params": {"argv": [sys.executable, str(JOB), self.RERUN, str(self.dir)]}}
            ],
            "grace_period": 1,
            "verify_timeout": 20,
            "max_attempts": 2,
            "backoff_initial": 1,
            "backoff_max": 1,
            "cooldown": 1,
            "breaker_threshold": 5,
            **self.POLICY,
        }
        body = {"name": self.job, "critical": True, "check": check, "recovery": policy}
        self.guard.post("/api/v1/components", body, expect=201)
        token = self.guard.post(f"/api/v1/components/{self.job}/ping-token")["token"]
        (self.dir / "url").write_text(f"{self.guard.base}/ping/{token}")

    # -- the job, as its scheduler runs it ----------------------------------------------------------
    def run_job(self) -> None:
        subprocess.run([sys.executable, str(JOB), "run", str(self.dir)], check=True, timeout=60)

    def runs(self) -> list[list[str]]:
        with contextlib.suppress(FileNotFoundError):
            return [line.split() for line in (self.dir / "runs.log").read_text().splitlines() if line]
        return []

    def pinged(self, number: int, what: str):
        """When run ``number`` had its ``what`` ping answered (a datetime), or None."""
        from datetime import UTC, datetime

        for parts in self.runs():
            if parts[0] == "ping" and parts[1] == str(number) and parts[2] == what:
                return datetime.fromtimestamp(float(parts[3]), UTC)
        return None

    def ended(self, number: int) -> bool:
        return any(p[0] == "end" and p[1] == str(number) for p in self.runs())

    def reruns(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return sum(1 for line in (self.dir / "actions.log").read_text().splitlines() if line)
        return 0

    def overlaps(self) -> list[list[str]]:
        return [p for p in self.runs() if p[0] == "overlap"]

    def why(self, *names: str):
        story = super().why(*(names or (self.job,)))
        return lambda: f"{story()}\nreruns: {self.reruns()}\nruns.log: {self.runs()}"

    def fail_once(self):
        """A good run (healthy), then a failing one: the incident the guard heals. Returns the time of
        the failure ping."""
        self.run_job()
        self.wait(lambda: self.healthy(self.job), "the first run seen healthy")
        self.run_job()
        failed = self.pinged(2, self.PLAN[1])
        assert failed is not None, self.why()()
        return failed

    def incidents_since(self, at) -> set[int]:
        transitions = [t for t in self.guard.transitions(self.job) if parse_time(t["at"]) >= at]
        return {t["incident_id"] for t in transitions} - {None}


class SlowRerun(BatchStory):
    name = job = "rerun-slow"
    PLAN = ("success", "fail", "sleep:4 success")

    def play(self) -> None:
        failed = self.fail_once()
        self.wait(lambda: self.ended(3) and self.settled(self.job), "the rerun to end and be verified")
        time.sleep(2)
        why = self.why()()
        attempts = self.guard.attempts(self.job)
        assert [a["state"] for a in attempts] == ["succeeded"], why
        assert self.reruns() == 1 and not self.overlaps(), why
        assert parse_time(attempts[0]["finished_at"]) >= self.pinged(3, "success"), why
        assert len(self.incidents_since(failed)) == 1, why


class LongRerun(BatchStory):
    name = job = "rerun-long"
    PLAN = ("success", "fail", "start sleep:6 success")
    CHECK = {"max_runtime_s": 15}
    POLICY = {"verify_timeout": 3}

    def play(self) -> None:
        self.fail_once()
        self.wait(lambda: self.ended(3) and self.settled(self.job), "the long rerun to end and be verified")
        time.sleep(2)
        why = self.why()()
        attempts = self.guard.attempts(self.job)
        assert [a["state"] for a in attempts] == ["succeeded"], why
        attempt = attempts[0]
        started, succeeded = self.pinged(3, "start"), self.pinged(3, "success")
        # Not verified by the /start, not failed at the 3 s deadline while the run was within its
        # max_runtime: verified by the success ping.
        assert parse_time(attempt["finished_at"]) >= succeeded, why
        assert succeeded > parse_time(attempt["action_finished_at"]) + self.seconds(3), why
        assert parse_time(attempt["verify_deadline"]) >= started + self.seconds(15) - self.seconds(1), why
        assert self.reruns() == 1 and not self.overlaps(), why

    @staticmethod
    def seconds(value: float):
        from datetime import timedelta

        return timedelta(seconds=value)


class FailingRerun(BatchStory):
    name = job = "rerun-fails"
    PLAN = ("success", "exit:3", "start sleep:2 exit:2", "sleep:1 success")

    def play(self) -> None:
        failed = self.fail_once()
        self.wait(lambda: self.ended(4) and self.settled(self.job), "the second rerun to be verified")
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts(self.job)
        assert (first["state"], second["state"]) == ("failed", "succeeded"), why
        # The first attempt was judged on its rerun's exit code, not on its /start.
        assert parse_time(first["finished_at"]) >= self.pinged(3, "exit:2"), why
        assert parse_time(second["started_at"]) >= self.pinged(3, "exit:2"), why
        assert self.reruns() == 2 and not self.overlaps(), why
        assert len(self.incidents_since(failed)) == 1, why


class JudgedAtOnce(BatchStory):
    """A rerun whose run is final before the policy's long grace ends: its attempt fails on it, the
    next attempt starts before that grace would have ended, and the second rerun heals; two reruns,
    never at once, one incident, paged once (firing, then resolved)."""

    GRACE_S = 60
    POLICY = {"grace_period": GRACE_S, "verify_timeout": 2 * GRACE_S}

    def judged(self):
        """(failed, first attempt, why) once the second rerun is verified, with the shared checks."""
        from datetime import timedelta

        failed = self.fail_once()
        self.wait(lambda: self.ended(4) and self.settled(self.job), "the second rerun to be verified")
        time.sleep(2)
        why = self.why()()
        first, second = self.guard.attempts(self.job)
        assert (first["state"], second["state"]) == ("failed", "succeeded"), why
        grace_end = parse_time(first["action_finished_at"]) + timedelta(seconds=self.GRACE_S)
        assert parse_time(second["started_at"]) < grace_end, why
        assert self.reruns() == 2 and not self.overlaps(), why
        assert len(self.incidents_since(failed)) == 1, why
        assert [p.get("kind") for p in self.sink.for_component(self.job)] == ["firing", "resolved"], why
        return failed, first, why

    def judged_on(self, failed, ping: str, reason: str, why: str):
        """The first rerun's ``ping`` (its time): the transition out of ``recovering`` that failed the
        first attempt came after it, for ``reason``."""
        pinged = self.pinged(3, ping)
        assert pinged is not None, why
        verdict = next(
            t
            for t in self.guard.transitions(self.job)
            if t["previous"] == "recovering" and parse_time(t["at"]) >= failed
        )
        assert verdict["current"] == "failed" and reason in verdict["reason"], why
        assert parse_time(verdict["at"]) >= pinged, why
        return pinged


class FastFailingRerun(JudgedAtOnce):
    name = job = "rerun-fails-fast"
    PLAN = ("success", "fail", "fail", "sleep:1 success")

    def play(self) -> None:
        failed, first, why = self.judged()
        rerun_failed = self.judged_on(failed, "fail", "reported failure", why)  # on the rerun's /fail
        assert parse_time(first["finished_at"]) >= rerun_failed, why


class WaitedRerun(JudgedAtOnce):
    """The recovery command runs the job in the foreground; its run fails (``/fail`` while the action
    still runs, the command exits 0 all the same), then the second one succeeds, also within its
    action."""

    name = job = "rerun-waited"
    PLAN = ("success", "fail", "sleep:1 fail", "sleep:1 success")
    RERUN = "rerun-wait"

    def play(self) -> None:
        _, first, why = self.judged()
        # The first run's /fail came while its action ran: held then, the action's verdict once it ended.
        rerun_failed = self.pinged(3, "fail")
        assert rerun_failed is not None and rerun_failed < parse_time(first["action_finished_at"]), why


class ShortRerun(JudgedAtOnce):
    """The rerun ends well within a second of its ``/start``, under the check's 3 s ``min_runtime``."""

    name = job = "rerun-too-short"
    PLAN = ("start sleep:4 success", "fail", "start success", "start sleep:4 success")
    CHECK = {"min_runtime_s": 3}

    def play(self) -> None:
        failed, _, why = self.judged()
        self.judged_on(failed, "success", "shorter than min_runtime", why)  # on the rerun's length


class RerunAfterStuck(BatchStory):
    """Run 2 pings ``/start`` and waits for DIR/release: stuck past ``max_runtime``. The rerun (run 3)
    pings success without a ``/start`` nor a duration of its own."""

    name = job = "rerun-after-stuck"
    PLAN = ("success", "start await:release", "success")
    CHECK = {"max_runtime_s": 6}

    def play(self) -> None:
        self.run_job()
        self.wait(lambda: self.healthy(self.job), "the first run seen healthy")
        with open(self.dir / "stuck.log", "ab") as out:
            stuck = subprocess.Popen([sys.executable, str(JOB), "run", str(self.dir)], stdout=out, stderr=out)
        try:
            self.wait(lambda: self.pinged(2, "start") is not None, "the stuck run's /start")
            started = self.pinged(2, "start")
            self.wait(lambda: self.ended(3) and self.settled(self.job), "the rerun to be verified")
            seen = self.guard.transitions(self.job)
            time.sleep(3)  # a few more checks of the job after its heal
            why = self.why()()
        finally:
            (self.dir / "release").touch()
            stuck.wait(timeout=60)
        attempts = self.guard.attempts(self.job)
        assert [a["state"] for a in attempts] == ["succeeded"], why
        (attempt,) = attempts
        succeeded = self.pinged(3, "success")
        assert started < parse_time(attempt["started_at"]) <= succeeded, why
        assert parse_time(attempt["finished_at"]) >= succeeded, why
        assert self.reruns() == 1, why
        # The rerun ran while the stuck run still held the job's lock: that overlap is the stuck run's.
        assert [p[1] for p in self.overlaps()] == ["3"], why
        # Healthy for good: the stored state holds no duration from the stuck run's /start.
        after = self.guard.transitions(self.job)[len(seen) :]
        assert seen[-1]["current"] == "healthy" and after == [], (after, why)


class LateFailOfReplacedRun(BatchStory):
    """Run 2 pings ``/start`` and waits for DIR/release: stuck past ``max_runtime``. The rerun (run 3)
    pings its ``/start`` and waits for DIR/go; the test then releases run 2, whose ``/fail`` comes
    after the action started, and lets run 3 succeed. Every run sends its own ``rid``."""

    name = job = "rerun-late-fail"
    PLAN = ("rid start success", "rid start await:release fail", "rid start await:go sleep:1 success")
    ANSWERED = True  # the job logs the guard's answer to each ping (judged or not)
    CHECK = {"max_runtime_s": 10}
    GRACE_S = 60
    POLICY = {"grace_period": GRACE_S, "verify_timeout": 2 * GRACE_S}

    def awaiting(self, number: int, name: str) -> bool:
        return any(p[:3] == ["awaiting", str(number), name] for p in self.runs())

    def play(self) -> None:
        self.run_job()
        self.wait(lambda: self.healthy(self.job), "the first run seen healthy")
        with open(self.dir / "stuck.log", "ab") as out:
            stuck = subprocess.Popen([sys.executable, str(JOB), "run", str(self.dir)], stdout=out, stderr=out)
        try:
            self.wait(lambda: self.awaiting(3, "go"), "the rerun started by the action, running")
            (self.dir / "release").touch()
            self.wait(lambda: self.pinged(2, "fail") is not None, "the stuck run's late /fail")
            (self.dir / "go").touch()
            self.wait(lambda: self.ended(3) and self.settled(self.job), "the rerun to be verified")
            seen = self.guard.transitions(self.job)
            time.sleep(3)  # a few more checks of the job after its heal
            why = self.why()()
        finally:
            (self.dir / "release").touch()
            (self.dir / "go").touch()
            stuck.wait(timeout=60)
        (attempt,) = self.guard.attempts(self.job)
        assert attempt["state"] == "succeeded", why
        late_fail, succeeded = self.pinged(2, "fail"), self.pinged(3, "success")
        # The stuck run's /fail came while the action's rerun was being verified, and judged nothing.
        assert parse_time(attempt["started_at"]) < late_fail < succeeded, why
        if self.ANSWERED:
            assert [p[-1] for p in self.runs() if p[:3] == ["ping", "2", "fail"]] == ["unjudged"], why
        assert parse_time(attempt["finished_at"]) >= succeeded, why
        assert self.reruns() == 1 and [p[1] for p in self.overlaps()] == ["3"], why
        assert not [t for t in self.guard.transitions(self.job) if t["current"] == "failed"], why
        assert [p.get("kind") for p in self.sink.for_component(self.job)] == ["firing", "resolved"], why
        after = self.guard.transitions(self.job)[len(seen) :]
        assert seen[-1]["current"] == "healthy" and after == [], (after, why)


class LateFailOfReplacedSdkRun(LateFailOfReplacedRun):
    """The same story, the job reporting through the SDK's ``job()`` (a real Python process using
    ``app.client``): the SDK names each run, with no change to the job's code."""

    name = job = "rerun-late-fail-sdk"
    PLAN = ("sdk success", "sdk await:release fail", "sdk await:go sleep:1 success")
    ANSWERED = False  # the SDK keeps the guard's answers to itself


class SilentRerun(BatchStory):
    name = job = "rerun-silent"
    PLAN = ("success", "fail", "-")
    POLICY = {"verify_timeout": 4, "max_attempts": 1}

    def play(self) -> None:
        failed = self.fail_once()
        self.wait(
            lambda: self.alerts(self.job, "healing-exhausted:") and self.guard.status(self.job) == "failed",
            "the silent rerun judged failed and a human told",
        )
        time.sleep(2)
        why = self.why()()
        (attempt,) = self.guard.attempts(self.job)
        assert attempt["state"] == "failed", why
        verdict = next(
            t
            for t in self.guard.transitions(self.job)
            if t["previous"] == "recovering" and parse_time(t["at"]) >= failed
        )
        # No ping since the action: failed once the verification window is over, not at the grace's end.
        assert parse_time(verdict["at"]) >= parse_time(attempt["verify_deadline"]), why
        assert verdict["current"] == "failed", why
        assert self.reruns() == 1, why


STORIES = [
    SlowRerun,
    LongRerun,
    FailingRerun,
    FastFailingRerun,
    WaitedRerun,
    ShortRerun,
    RerunAfterStuck,
    LateFailOfReplacedRun,
    LateFailOfReplacedSdkRun,
    SilentRerun,
]


@pytest.fixture(scope="module")
def reruns(scenario_db):
    url, workdir = scenario_db
    guard = GuardProcess(url, workdir / "batch-rerun-guard", config=guard_config())
    sink = NotificationSink()
    try:
        return tell(STORIES, guard, workdir / "batch-rerun", sink)
    finally:
        with contextlib.suppress(Exception):
            sink.close()


@pytest.mark.parametrize("story", [cls.name for cls in STORIES])
def test_batch_rerun_story(reruns, story):
    error = reruns[story].error
    assert error is None, error
