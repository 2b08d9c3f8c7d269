"""Slow clients (slowloris): a request's head and body must arrive within their deadlines, set the
way a user sets them (``PIPELINE_SECURITY__REQUEST_HEADER_TIMEOUT`` / ``..._BODY_TIMEOUT``), on a real
``pipeline-guard serve``. Before, a connection holding half a request stayed open for ever, with its
file descriptor."""

from __future__ import annotations

import socket
import time

import pytest

from tests.security.serve_process import guard_process


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slow")
    with guard_process(
        f"sqlite+aiosqlite:///{tmp}/g.db",
        tmp,
        PIPELINE_SECURITY__REQUEST_HEADER_TIMEOUT="2s",
        PIPELINE_SECURITY__REQUEST_BODY_TIMEOUT="3s",
    ) as base:
        yield int(base.rsplit(":", 1)[1])


def read_all(sock: socket.socket, patience: float = 30.0) -> bytes:
    """Everything the guard sends until it closes the connection (or ``patience`` runs out)."""
    sock.settimeout(patience)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        chunks.append(b"<still open>")
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and ``content-length`` body) from a kept-alive connection."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"<closed>"
        assert not data.endswith(b"<closed>"), data
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_half_a_head_is_answered_408_and_closed(guard):
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_connection_that_sends_nothing_is_closed(guard):
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_head_trickled_past_the_deadline_is_refused(guard):
    # One byte a second keeps an idle timer from firing; the deadline counts from the first byte.
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 6
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        sock.settimeout(30)
        closed = False
        for byte in head:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.5)
        answer = read_all(sock)
        assert closed or answer.startswith(b"HTTP/1.1 408 "), answer


def test_half_a_body_is_answered_408_and_closed(guard):
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        sock.sendall(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=a"
        )
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_slow_but_timely_client_is_served_and_kept_alive(guard):
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        for _ in range(2):  # the second request on the same connection has its own deadline
            sock.sendall(b"GET /health HTTP/1.1\r\n")
            time.sleep(0.5)
            sock.sendall(b"Host: x\r\n\r\n")
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(2.5)  # longer than the head's deadline, idle between requests: within keep-alive
        body = b"username=nobody&password=wrong"
        sock.sendall(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body[:5]
        )
        time.sleep(1)
        sock.sendall(body[5:])
        answer = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 401 "), answer


def test_a_head_past_its_size_bound_is_answered_431_and_closed(guard):
    # httptools gathers a header's value in memory until it ends: a client streaming one of a few
    # hundred megabytes grew the guard by as much and stalled its event loop while it was parsed.
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # closed under us: the point
        try:
            answer = read_all(sock)
        except ConnectionResetError:  # closed with our bytes unread: the kernel may drop the 431
            answer = b"<reset>"
        assert sent < 64 * 1024 * 1024, "the guard kept reading the head"
        assert answer.startswith(b"HTTP/1.1 431 ") or answer == b"<reset>", answer[:200]


def test_a_large_but_reasonable_head_is_served(guard):
    with socket.create_connection(("127.0.0.1", guard)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32 * 1024 + b"\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
