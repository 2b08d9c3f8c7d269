"""The scenario suite's workloads: real processes the guard watches and restarts (stdlib only, so a
restart costs a Python start-up and nothing more).

    python workload.py serve   DIR   # an HTTP target on 127.0.0.1, or a heartbeat job (spec.json)
    python workload.py restart DIR   # the recovery command the guard runs (argv, no shell)

Everything a test steers lives in DIR, one small file each:

- ``spec.json``: ``{"role": "http"|"heartbeat", "port", "guard", "component", "token"}``.
- ``mode``: what the workload does now, re-read on every request / ping:
  ``ok``; ``crash`` (the process exits); ``hang`` (``/health`` never answers); ``slow`` (answers after
  0.6 s: degraded; ``slow:S`` after S seconds); ``down`` (500); ``flap:D:U:T0`` (down for D
  seconds, up for U seconds, ... from T0);
  ``silent`` (the heartbeat job stops pinging).
- ``restart_mode``: how the recovery command behaves: ``fix`` (kill, reset ``mode`` to ok, start
  again: the default), ``keep`` (kill and start again, keep ``mode``: the fault survives a restart),
  ``fail`` (exit 1 having done nothing).
- ``action_sleep``: seconds the command spends (in a child process of its group) before acting; a
  ``once`` suffix makes only the next invocation sleep.
- ``boot_delay``: seconds a restarted target waits before it listens (slow boot).
- ``cpus``: the CPUs the target runs on, e.g. ``1`` or ``0,1`` (it keeps off a core loaded on purpose,
  also once restarted by a guard that runs on that core).
- ``upstream`` (HTTP targets): what the target needs to answer 200 while its ``mode`` is ``ok``, so
  it fails *because of* an upstream: ``http URL`` (that URL answers 200 within 0.5 s) or
  ``fresh PATH SECONDS`` (PATH, a heartbeat job's ``output``, was written within SECONDS).
- ``output`` (written by a heartbeat job on each ping): the time of its last run, what a consumer
  of its data reads.
- ``actions.log`` (written by the command): ``start <epoch> <pid> <pgid>`` when it begins,
  ``concurrent <epoch> <pid>`` when another invocation for the same DIR is still running (an flock
  held by the command and its children), ``done <epoch> <pid> <ok|fail>`` at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def read(directory: Path, name: str, default: str = "") -> str:
    try:
        return (directory / name).read_text().strip()
    except FileNotFoundError:
        return default


def write(directory: Path, name: str, value: str) -> None:
    tmp = directory / f".{name}.tmp"
    tmp.write_text(value)
    os.replace(tmp, directory / name)  # readers never see a half-written file


def failing_now(mode: str) -> bool:
    if mode == "down":
        return True
    if mode.startswith("flap:"):
        _, down, up, t0 = mode.split(":")
        return (time.time() - float(t0)) % (float(down) + float(up)) < float(down)
    return False


# -- the target ----------------------------------------------------------------------------------


def upstream_ok(directory: Path) -> bool:
    need = read(directory, "upstream").split()
    if not need:
        return True
    if need[0] == "http":
        try:
            with urllib.request.urlopen(need[1], timeout=0.5) as answer:
                return answer.status == 200
        except OSError:
            return False
    if need[0] == "fresh":
        try:
            return time.time() - float(Path(need[1]).read_text()) <= float(need[2])
        except (OSError, ValueError):
            return False
    raise ValueError(f"unknown upstream {need!r}")


def serve_http(directory: Path, spec: dict) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            mode = read(directory, "mode", "ok")
            if mode == "hang":
                time.sleep(3600)
            if mode == "slow" or mode.startswith("slow:"):
                time.sleep(float(mode.partition(":")[2] or 0.6))
            code = 500 if failing_now(mode) or (mode == "ok" and not upstream_ok(directory)) else 200
            body = json.dumps({"mode": mode, "pid": os.getpid()}).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", spec["port"]), Handler)
    server.daemon_threads = True
    write(directory, "pid", str(os.getpid()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:  # a crash is the process going away, as a real one would
        if read(directory, "mode") == "crash":
            os._exit(3)
        time.sleep(0.1)


def serve_heartbeat(directory: Path, spec: dict) -> None:
    write(directory, "pid", str(os.getpid()))
    url = f"{spec['guard']}/api/v1/components/{spec['component']}/heartbeat"
    while True:
        mode = read(directory, "mode", "ok")
        if mode == "crash":
            os._exit(3)
        if mode != "silent":
            write(directory, "output", f"{time.time():.3f}")
            request = urllib.request.Request(
                url,
                data=b'{"status": "success"}',
                method="POST",
                headers={"X-Ping-Token": spec["token"], "Content-Type": "application/json"},
            )
            with contextlib.suppress(OSError):  # the guard may be restarting; the next ping will do
                urllib.request.urlopen(request, timeout=2).close()
        time.sleep(0.5)


def serve(directory: Path) -> None:
    spec = json.loads((directory / "spec.json").read_text())
    cpus = read(directory, "cpus")
    if cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    delay = float(read(directory, "boot_delay", "0") or 0)
    if delay and os.environ.get("WORKLOAD_RESTARTED") == "1":
        time.sleep(delay)
    if spec["role"] == "heartbeat":
        serve_heartbeat(directory, spec)
    else:
        serve_http(directory, spec)


def start(directory: Path, *, restarted: bool) -> subprocess.Popen:
    """Start the workload detached (own session): the guard's process-group handling never reaches it."""
    env = {**os.environ, "WORKLOAD_RESTARTED": "1" if restarted else "0"}
    with open(directory / "workload.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "serve", str(directory)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for its parent to reap it counts: it holds no port)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def kill(directory: Path) -> None:
    try:
        pid = int(read(directory, "pid"))
    except ValueError:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not gone(pid):
        time.sleep(0.02)


# -- the recovery command ------------------------------------------------------------------------


def log_action(directory: Path, line: str) -> None:
    with open(directory / "actions.log", "a") as handle:
        handle.write(f"{line}\n")
        handle.flush()


def restart(directory: Path) -> int:
    me = os.getpid()
    log_action(directory, f"start {time.time():.3f} {me} {os.getpgid(0)}")
    lock = open(directory / "action.lock", "w")  # noqa: SIM115 - inherited by the sleeping child on purpose
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log_action(directory, f"concurrent {time.time():.3f} {me}")
        fcntl.flock(lock, fcntl.LOCK_EX)
    sleep = read(directory, "action_sleep")
    if sleep:
        seconds, _, once = sleep.partition(" ")
        if once == "once":
            (directory / "action_sleep").unlink()
        # A child in the command's own process group: what a guard must kill if it loses track of us.
        subprocess.run([sys.executable, "-c", f"import time; time.sleep({float(seconds)})"], check=False)
    how = read(directory, "restart_mode", "fix")
    if how == "fail":
        print("restart refused: the target cannot be restarted", file=sys.stderr)
        log_action(directory, f"done {time.time():.3f} {me} fail")
        return 1
    kill(directory)
    if how != "keep":
        write(directory, "mode", "ok")
    start(directory, restarted=True)
    print(f"restarted {directory.name}")
    log_action(directory, f"done {time.time():.3f} {me} ok")
    return 0


def main() -> int:
    command, directory = sys.argv[1], Path(sys.argv[2])
    if command == "serve":
        serve(directory)
        return 0
    if command == "restart":
        return restart(directory)
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
