"""Targets on their own threads, for tests of a guard that could not run for a while: they answer
while the test's event loop is blocked (time.sleep on it), as a target's answer arrives in a socket
while the guard cannot run. ``http_thread_target`` answers ``{}`` (200, JSON) 50 ms after a request
(``/hang``: only once released); ``banner_thread_target`` sends its banner 50 ms after accepting."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

BLOCK_S = 1.0  # the guard's loop is blocked this long, past the 0.3 s timeouts of the tests


class Target:
    def __init__(self) -> None:
        self.got_request = threading.Event()
        self.release = threading.Event()  # a hanging target answers only once released
        self.port = 0


@pytest.fixture
def http_thread_target() -> Iterator[Target]:
    target = Target()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            target.got_request.set()
            if self.path == "/hang":
                target.release.wait(10)
            else:
                time.sleep(0.05)  # answers in time, once the guard's loop is blocked
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (the hanging target, released at the end)
                self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    target.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield target
    target.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def banner_thread_target() -> Iterator[Target]:
    """Accepts, then sends its banner 50 ms later (or never, for a hanging target)."""
    target = Target()
    listener = socket.create_server(("127.0.0.1", 0))
    target.port = listener.getsockname()[1]
    hang = threading.Event()
    target.hang = hang  # type: ignore[attr-defined]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            target.got_request.set()
            if hang.is_set():
                target.release.wait(10)
            else:
                time.sleep(0.05)
                conn.sendall(b"SSH-2.0-target\r\n")
            time.sleep(0.5)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield target
    target.release.set()
    listener.close()


async def block_the_loop_once_the_target_has_the_request(target: Target) -> None:
    while not target.got_request.is_set():
        await asyncio.sleep(0.001)
    time.sleep(BLOCK_S)  # the guard cannot run: its answer arrives meanwhile
