"""A small flaky pipeline worker: a real HTTP process on 127.0.0.1 that can be told to misbehave.

    python examples/flaky_worker.py --port 8765 --pid-file /tmp/worker.pid

GET /health answers 200 {"status": "ok"} while healthy. Control endpoints (POST or GET):
/control/crash (the process exits), /control/hang (/health never answers), /control/slow (/health takes
5 s), /control/ok (back to normal). Writes its pid to --pid-file so restart_worker.py can find it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from aiohttp import web

MODE = {"value": "ok"}


async def health(request: web.Request) -> web.Response:
    if MODE["value"] == "hang":
        await asyncio.sleep(3600)
    if MODE["value"] == "slow":
        await asyncio.sleep(5)
    return web.json_response({"status": "ok", "pid": os.getpid(), "since": STARTED})


async def control(request: web.Request) -> web.Response:
    action = request.match_info["action"]
    if action == "crash":
        asyncio.get_running_loop().call_later(0.05, os._exit, 1)
        return web.json_response({"crashing": True})
    if action not in ("hang", "slow", "ok"):
        raise web.HTTPNotFound()
    MODE["value"] = action
    return web.json_response({"mode": action})


STARTED = time.time()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--pid-file", required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_route("*", "/control/{action}", control)
    with open(args.pid_file, "w") as handle:
        handle.write(str(os.getpid()))
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, reuse_address=True)


if __name__ == "__main__":
    main()
