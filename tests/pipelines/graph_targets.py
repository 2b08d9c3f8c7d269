"""Pipeline stages as real processes for the root-cause scenario (stdlib only).

    python graph_targets.py serve NAME PORT [UPSTREAM_URL]   # /health: 200, or 503 when the upstream's fails
    python graph_targets.py start NAME PORT [UPSTREAM_URL]   # the restart policy: log the restart, launch
                                                             # ``serve`` detached, return once it listens
State lives beside this run's files (``--dir``): NAME.pid and restarts.log (one line per restart).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(name: str, port: int, upstream: str | None, state: Path) -> None:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            code, text = 200, f"{name} ok"
            if upstream:
                try:
                    with urllib.request.urlopen(upstream, timeout=1) as r:
                        ok = r.status == 200
                except OSError:
                    ok = False
                if not ok:
                    code, text = 503, f"{name}: upstream {upstream} is failing"
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    (state / f"{name}.pid").write_text(str(os.getpid()))
    server.serve_forever()


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(name: str, port: int, upstream: str | None, state: Path, delay: float) -> int:
    with open(state / "restarts.log", "a") as log:
        log.write(f"{time.time():.3f} {name}\n")
    time.sleep(delay)  # a stage takes a while to come back: its dependents fail meanwhile
    argv = [
        sys.executable,
        __file__,
        "serve",
        name,
        str(port),
        *([upstream] if upstream else []),
        "--dir",
        str(state),
    ]
    # A new session: the guard kills the restart command's process group when it times out, never the stage.
    subprocess.Popen(
        argv,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if listening(port):
            return 0
        time.sleep(0.05)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve", "start"])
    parser.add_argument("name")
    parser.add_argument("port", type=int)
    parser.add_argument("upstream", nargs="?")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    state = Path(args.dir)
    if args.command == "serve":
        serve(args.name, args.port, args.upstream, state)
        return 0
    return start(args.name, args.port, args.upstream, state, args.delay)


if __name__ == "__main__":
    sys.exit(main())
