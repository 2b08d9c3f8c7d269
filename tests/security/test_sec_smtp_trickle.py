"""A mail server that accepts and then trickles one byte at a time (never a whole line, so no socket
read ever times out) must not keep the guard's threads: every send ends at its deadline, the thread
that ran it included, and the event loop's default executor (which also resolves every host name
the guard connects to) stays free. Before, each such send left a thread blocked in smtplib for as
long as the server kept trickling; six of them (the default executor's size on two cores) stalled
every DNS lookup of probes, webhooks and the SSRF checks behind them."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from app.notify.channels.base import OutgoingNotification
from app.notify.channels.email import EmailChannel
from tests.conftest import make_settings

SENDS = 8  # more than the default executor's workers on this kind of machine (min(32, cores + 4))


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, asyncio.CancelledError):
        writer.write(b"220")
        while True:
            await asyncio.sleep(0.05)
            writer.write(b" ")
            await writer.drain()


def _smtp_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.is_alive() and t.name.startswith("pipeline-guard-smtp")]


async def test_a_trickling_mail_server_keeps_no_thread_and_no_executor(db_url, tmp_path):
    settings = make_settings(
        db_url,
        tmp_path,
        alerting={"request_timeout": "300ms"},
        security={"ssrf_allowlist": ["127.0.0.1/32"]},
    )
    server = await asyncio.start_server(_trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": "g@x.io",
        "to": ["a@x.io"],
    }
    notification = OutgoingNotification(
        id=1, idempotency_key="k", kind="test", payload={"kind": "test"}, language="en", channel_name="mail"
    )
    threads_before = {t.ident for t in threading.enumerate()}
    try:
        results = await asyncio.gather(
            *(EmailChannel().deliver(config, notification, settings) for _ in range(SENDS))
        )
        for response, permanent in results:
            assert response.status is None and "timeout" in (response.error or ""), response
            assert not permanent
        # The default executor answers: a host name still resolves.
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(loop.getaddrinfo("localhost", 80), timeout=10)
        assert infos
        # No thread of those sends is left behind (they end once their socket is shut).
        for _ in range(100):
            leftover = [t for t in threading.enumerate() if t.is_alive() and t.ident not in threads_before]
            if not _smtp_threads() and not [t for t in leftover if "asyncio" in t.name]:
                break
            await asyncio.sleep(0.05)
        assert _smtp_threads() == []
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)
