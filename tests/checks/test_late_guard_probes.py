"""Probes of a guard that could not run for a while: the target answered in time, but the answer sat
in the socket while the guard's event loop was blocked past the check's timeout. The probe reads it
(UP), it does not report "timeout". A target that really does not answer still times out.

The targets run on their own threads (they answer while the test's loop is blocked); the loop is
blocked for real, with time.sleep, as soon as the target has the request."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.checks.base import CheckContext, Outcome
from app.checks.http import HttpCheck
from app.checks.tcp import TcpCheck

BLOCK_S = 1.0  # the guard's loop is blocked this long, past the checks' 0.3 s timeout
TIMEOUT_S = 0.3


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
                self.wfile.write(b"ok")

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


async def probe_while_blocked(kind, params: dict, target: Target):
    blocker = asyncio.create_task(block_the_loop_once_the_target_has_the_request(target))
    result = await kind.run(params, CheckContext(timeout=TIMEOUT_S))
    await blocker
    return result


async def test_http_answer_read_after_the_guard_was_blocked(http_thread_target):
    url = f"http://127.0.0.1:{http_thread_target.port}/ok"
    result = await probe_while_blocked(HttpCheck(), {"url": url}, http_thread_target)
    assert result.outcome is Outcome.UP, result.detail
    assert result.detail.startswith("HTTP 200")


async def test_http_target_that_hangs_still_times_out_when_the_guard_was_blocked(http_thread_target):
    url = f"http://127.0.0.1:{http_thread_target.port}/hang"
    result = await probe_while_blocked(HttpCheck(), {"url": url}, http_thread_target)
    assert result.outcome is Outcome.DOWN
    assert result.detail == f"timeout after {TIMEOUT_S:g}s"


async def test_tcp_banner_read_after_the_guard_was_blocked(banner_thread_target):
    params = {"host": "127.0.0.1", "port": banner_thread_target.port, "expect_banner": "SSH-2.0"}
    result = await probe_while_blocked(TcpCheck(), params, banner_thread_target)
    assert result.outcome is Outcome.UP, result.detail


async def test_tcp_banner_that_never_comes_still_fails_when_the_guard_was_blocked(banner_thread_target):
    banner_thread_target.hang.set()  # type: ignore[attr-defined]
    params = {"host": "127.0.0.1", "port": banner_thread_target.port, "expect_banner": "SSH-2.0"}
    result = await probe_while_blocked(TcpCheck(), params, banner_thread_target)
    assert result.outcome is Outcome.DOWN
    assert "banner does not contain" in result.detail
