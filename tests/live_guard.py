"""A real guard served by uvicorn on 127.0.0.1 in a background thread (for the client SDK, the HTTP
CLI and the OpenAPI fuzz test). Import as ``from live_guard import serve_guard`` (tests/ is on the
path through the root conftest).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from app.auth.permissions import Role
from app.config.settings import Settings
from tests.ports import free_port

ADMIN_USER = "fuzz-admin"
ADMIN_PASSWORD = "correct-horse-battery-staple"


@dataclass
class LiveGuard:
    url: str
    username: str
    password: str
    settings: Settings

    def token(self, username: str | None = None, password: str | None = None) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/auth/token",
            timeout=10,
            data={"username": username or self.username, "password": password or self.password},
        )
        response.raise_for_status()
        return response.json()["access_token"]


@contextmanager
def serve_app(app, *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        loop="asyncio",
        http="h11",
        log_config=None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def serve_guard(settings: Settings, *, role: Role = Role.ADMIN) -> Iterator[LiveGuard]:
    """A real guard on loopback with one user of ``role`` (the database must be migrated)."""
    from app.cli.bootstrap import create_user
    from app.main import create_app

    create_user(settings, ADMIN_USER, ADMIN_PASSWORD, role)
    app = create_app(settings, build_services=lambda rt: [])
    with serve_app(app) as url:
        yield LiveGuard(url=url, username=ADMIN_USER, password=ADMIN_PASSWORD, settings=settings)


def envelope(error_type: str, message: str, details: dict | None = None) -> dict:
    """The guard's error envelope, for stub servers."""
    return {
        "error": {
            "type": error_type,
            "message": message,
            "details": details or {},
            "timestamp": "2024-01-01T00:00:00+00:00",
        }
    }
