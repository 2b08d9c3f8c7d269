"""The demo's recovery action: kill the flaky worker (by its pid file) and start a fresh one.

    python examples/restart_worker.py --port 8765 --pid-file /tmp/worker.pid --log /tmp/worker.log

Run by the guard's `restart` strategy as an argument list (no shell). The new worker is detached (own
session, output to --log) so the guard's process-group handling never touches it after we exit.
Exits 0 once the new worker answers /health (bounded by --wait seconds), 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def kill(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=0.5) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--log", default=os.devnull)
    parser.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args()
    pid_file = Path(args.pid_file)
    kill(pid_file)
    with open(args.log, "ab") as log:
        subprocess.Popen(
            [sys.executable, str(HERE / "flaky_worker.py"), "--port", str(args.port), "--pid-file", str(pid_file)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if healthy(args.port):
            print(f"worker restarted on port {args.port}")
            return 0
        time.sleep(0.05)
    print("worker did not come back in time", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
