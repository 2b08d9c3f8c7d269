"""A batch job for the scenario suite, the way a cron job is written: it runs, and pings its URL with
curl (``/start`` when it begins, the URL when it succeeded, ``/fail`` or ``/<exit code>`` when not).

    python batch_job.py run   DIR   # one run of the job, steered by DIR/plan
    python batch_job.py rerun DIR   # the recovery command: starts a run in the background, returns
    python batch_job.py rerun-wait DIR   # the recovery command: runs the job, returns once it ended
                                         # (exit 0 whatever the run reported, as ``job || true``)

Files in DIR:

- ``url``: the job's ping URL (``http://guard/ping/<token>``).
- ``plan``: one line per run, used in order (the last line again for any further run); each line is
  steps separated by spaces: ``start`` (ping ``/start``), ``sleep:S`` (work for S seconds),
  ``success`` (ping the URL), ``fail`` (ping ``/fail``), ``exit:N`` (ping ``/N``), ``await:NAME``
  (work until the test creates DIR/NAME), ``rid`` (this run names itself: a new UUID sent as
  ``?rid=`` with each of its later pings, as healthchecks.io's run ids). An empty line (``-``) is a
  run that never pings. A line that begins with ``sdk`` is a Python job reporting through the SDK
  instead of curl: its other steps run inside ``GuardClient.job()`` (for the component named as DIR,
  with the URL's token), whose entry sends the run's ``start``; ``success`` ends the block, ``fail``
  raises in it, and the SDK reports either, with the run id it chose.
- ``runs.log`` (written by the runs): ``begin N <epoch>``, ``ping N <what> <epoch>`` once each ping
  was answered (the epoch is when it was sent; a curl ping with a run id adds ``judged`` or
  ``unjudged``, as the guard answered), ``end N <epoch>``, and ``overlap N <epoch>`` when run N began
  while another run of the job was still going (a job run twice at once).
- ``actions.log`` (written by the recovery command): ``rerun <epoch> <pid>`` per invocation.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path


def _log(directory: Path, name: str, line: str) -> None:
    with open(directory / name, "a") as handle:
        handle.write(f"{line}\n")
        handle.flush()


def _next_run(directory: Path) -> int:
    with open(directory / "counter.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = directory / "runs"
        number = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(number))
        return number


def _ping(directory: Path, url: str, number: int, what: str, rid: str | None = None) -> None:
    suffix = {"success": "", "start": "/start", "fail": "/fail"}.get(what)
    if suffix is None:
        suffix = "/" + what.split(":", 1)[1]  # exit:N
    if rid is not None:
        suffix += f"?rid={rid}"
    sent = time.time()  # before the guard can have read it
    # As the README tells a job to: fail on an HTTP error, bounded, retried.
    answer = subprocess.run(
        ["curl", "-fsS", "-m", "10", "--retry", "6", "--retry-connrefused", url + suffix],
        check=True,
        stdout=subprocess.PIPE,
    ).stdout
    verdict = ""
    if rid is not None:
        verdict = " judged" if json.loads(answer)["judged"] else " unjudged"
    _log(directory, "runs.log", f"ping {number} {what} {sent:.3f}{verdict}")


def run(directory: Path) -> int:
    number = _next_run(directory)
    plans = [line.strip() for line in (directory / "plan").read_text().splitlines() if line.strip()]
    steps = [s for s in plans[min(number, len(plans)) - 1].split() if s != "-"]
    url = (directory / "url").read_text().strip()
    lock = open(directory / "run.lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _log(directory, "runs.log", f"overlap {number} {time.time():.3f}")
    _log(directory, "runs.log", f"begin {number} {time.time():.3f}")
    if steps[:1] == ["sdk"]:
        _run_with_sdk(directory, url, number, steps[1:])
    else:
        _run_with_curl(directory, url, number, steps)
    _log(directory, "runs.log", f"end {number} {time.time():.3f}")
    return 0


def _run_with_curl(directory: Path, url: str, number: int, steps: list[str]) -> None:
    rid = None
    for step in steps:
        if step == "rid":
            rid = str(uuid.uuid4())
            _log(directory, "runs.log", f"rid {number} {rid}")
        elif not _work(directory, number, step):
            _ping(directory, url, number, step, rid)


def _work(directory: Path, number: int, step: str) -> bool:
    """Run a step that is work (``sleep:S``, ``await:NAME``); False for a ping."""
    if step.startswith("sleep:"):
        time.sleep(float(step.split(":", 1)[1]))
    elif step.startswith("await:"):
        _log(directory, "runs.log", f"awaiting {number} {step.split(':', 1)[1]} {time.time():.3f}")
        while not (directory / step.split(":", 1)[1]).exists():
            time.sleep(0.1)
    else:
        return False
    return True


class RunFailed(Exception):
    """The run's ``fail`` step: the job raises, and the SDK reports the failure."""


def _run_with_sdk(directory: Path, url: str, number: int, steps: list[str]) -> None:
    from app.client import GuardClient

    base, token = url.rsplit("/ping/", 1)
    finish, sent = "success", time.time()
    with GuardClient(base, raise_errors=True, flush_interval=0) as guard:
        try:
            with guard.job(directory.name, ping_token=token):  # the SDK names the run itself
                _log(directory, "runs.log", f"ping {number} start {sent:.3f}")
                for step in steps:
                    if step == "fail":
                        raise RunFailed("the run failed")
                    if step != "success":  # the end of the block reports it
                        _work(directory, number, step)
                sent = time.time()
        except RunFailed:
            finish, sent = "fail", time.time()
    _log(directory, "runs.log", f"ping {number} {finish} {sent:.3f}")


def rerun(directory: Path) -> int:
    """Start a run detached (its own session, no inherited pipes) and return at once, as a scheduler's
    "run now" does: the guard's action is over long before the run."""
    _log(directory, "actions.log", f"rerun {time.time():.3f} {os.getpid()}")
    with open(directory / "job.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "run", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    print(f"rerun of {directory.name} started")
    return 0


def rerun_wait(directory: Path) -> int:
    """Run the job in the foreground, as a scheduler's "run now and wait" does: the run and its pings
    happen while the guard's action is still running."""
    _log(directory, "actions.log", f"rerun-wait {time.time():.3f} {os.getpid()}")
    run(directory)
    return 0


def main() -> int:
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "run":
        return run(directory)
    if command == "rerun":
        return rerun(directory)
    if command == "rerun-wait":
        return rerun_wait(directory)
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
