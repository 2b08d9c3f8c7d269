"""A loopback TCP front for a real server (Postgres, Redis), switchable between the shapes of "server
unavailable" a guard meets in production:

- ``forward``: a plain byte proxy to the real server;
- ``starting``: answers each new connection the way a starting Postgres does (SSLRequest -> 'N',
  then an ErrorResponse FATAL 57P03 "the database system is starting up"; asyncpg raises
  ``CannotConnectNowError``);
- ``refuse``: not listening at all (connection refused);
- ``hang``: accepts and never answers.

Switching mode drops the connections already open, as a restart does.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class PgFront:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.mode = "forward"
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def set_mode(self, mode: str) -> None:
        assert mode in ("forward", "starting", "refuse", "hang")
        self.mode = mode
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.set_mode("refuse")
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            if self.mode == "forward":
                await self._forward(reader, writer)
            elif self.mode == "starting":
                await self._starting(reader, writer)
            else:  # hang
                await reader.read(65536)
                await asyncio.Event().wait()
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _starting(self, reader, writer) -> None:
        while True:
            length = struct.unpack("!I", await reader.readexactly(4))[0]
            payload = await reader.readexactly(length - 4)
            if payload[:4] in (struct.pack("!I", 80877103), struct.pack("!I", 80877104)):
                writer.write(b"N")  # no SSL / GSS encryption; the startup message follows
                await writer.drain()
                continue
            writer.write(_error_response("57P03", "the database system is starting up"))
            await writer.drain()
            return

    async def _forward(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers.add(up_writer)

        async def pipe(src, dst):
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()
