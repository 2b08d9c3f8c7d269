"""A TCP proxy between the guard and Postgres that can cut connections, refuse new ones and delay.

Runs its own asyncio loop in a thread, so tests (sync or async) and subprocess guards can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tests.ports import free_port


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = 0
        self.delay = 0.0
        self.refusing = False
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")

    # -- control (thread-safe) ------------------------------------------------------------------
    def start(self) -> int:
        self.port = free_port()
        self._thread.start()
        self._call(self._listen())
        return self.port

    def cut(self) -> None:
        """Drop every open connection and refuse new ones (the database 'goes away')."""
        self.refusing = True
        self._call(self._stop_listening())
        self._call(self._close_all())

    def restore(self) -> None:
        self.refusing = False
        self._call(self._listen())

    def kill_connections(self) -> None:
        self._call(self._close_all())

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def url_port(self) -> int:
        return self.port

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- the loop side -------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", self.port, reuse_address=True
            )

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _close_all(self) -> None:
        for writer in list(self._writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()  # RST, like a dead host or a killed server
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)
