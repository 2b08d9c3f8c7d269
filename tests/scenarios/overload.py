"""An overloaded machine, on purpose: busy-loop processes at normal priority on one core, and a guard
process pinned to that same core, so its checks run late (the scheduler's lag reads seconds) while the
workloads it watches keep a core of their own and answer on time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

BUSY_LOOP = "while True:\n    pass\n"


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def loaded_core() -> int:
    """The core the hogs and the guard share: the last one this test may use."""
    return cores()[-1]


def other_cores() -> set[int]:
    """Where the workloads run (every core but the loaded one; the only one on a single core)."""
    rest = set(cores()) - {loaded_core()}
    return rest or {loaded_core()}


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads made later inherit their creator's affinity)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cpus)


class CpuHogs:
    """``count`` busy-loop processes on ``cpus``, started and killed by the test (own sessions)."""

    def __init__(self, count: int, cpus: set[int]):
        self.count = count
        self.cpus = cpus
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        for _ in range(self.count):
            proc = subprocess.Popen(
                [sys.executable, "-c", BUSY_LOOP],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self.procs.append(proc)
            pin(proc.pid, self.cpus)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()

    def __enter__(self) -> CpuHogs:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
