"""``with guard.maintenance("etl", "30m"):`` — a pipeline opens a maintenance window for its own
component while it works on it (a migration, a backfill) and closes it when done.

Inside the window the guard keeps checking the component but sends no notification for it and
makes no healing attempt. The duration caps the window: a pipeline that dies inside it does not
silence the component for longer. Like every SDK call, opening or closing never crashes the
pipeline (errors are logged; raised only with ``raise_errors=True``), and the block's own
exception always propagates.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from app.client import calls
from app.client.core import API, segment

if TYPE_CHECKING:
    from app.client.aio import AsyncGuardClient
    from app.client.sync import GuardClient

Duration = str | float | int | timedelta


def _duration(value: Duration) -> str | float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError("duration must be like '30m', a number of seconds or a timedelta")
    return value


def open_call(component: str, duration: Duration, comment: str | None, ping_token: str | None) -> calls.Call:
    body: dict[str, Any] = {"duration": _duration(duration)}
    if comment:
        body["comment"] = comment
    return calls.Call(
        "POST",
        f"{API}/components/{segment(component)}/maintenance",
        json=body,
        headers={"X-Ping-Token": ping_token} if ping_token else {},
        authenticated=ping_token is None,
    )


def close_call(component: str, window_id: int, ping_token: str | None) -> calls.Call:
    return calls.Call(
        "DELETE",
        f"{API}/components/{segment(component)}/maintenance/{window_id}",
        headers={"X-Ping-Token": ping_token} if ping_token else {},
        authenticated=ping_token is None,
    )


class Maintenance:
    """The synchronous context manager (``GuardClient.maintenance``)."""

    def __init__(
        self,
        client: GuardClient,
        component: str,
        duration: Duration,
        comment: str | None = None,
        ping_token: str | None = None,
    ):
        self.client, self.component, self.ping_token = client, component, ping_token
        self._open = open_call(component, duration, comment, ping_token)
        self.window: dict[str, Any] | None = None  # the guard's answer: id, window_ends_at, ...

    def __enter__(self) -> Self:
        self.window = self.client._send(self._open, f"maintenance {self.component}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.window and self.window.get("id") is not None:
            self.client._send(
                close_call(self.component, self.window["id"], self.ping_token),
                f"maintenance {self.component}",
            )


class AsyncMaintenance:
    """The asyncio twin (``AsyncGuardClient.maintenance``): ``async with``."""

    def __init__(
        self,
        client: AsyncGuardClient,
        component: str,
        duration: Duration,
        comment: str | None = None,
        ping_token: str | None = None,
    ):
        self.client, self.component, self.ping_token = client, component, ping_token
        self._open = open_call(component, duration, comment, ping_token)
        self.window: dict[str, Any] | None = None

    async def __aenter__(self) -> Self:
        self.window = await self.client._send(self._open, f"maintenance {self.component}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.window and self.window.get("id") is not None:
            await self.client._send(
                close_call(self.component, self.window["id"], self.ping_token),
                f"maintenance {self.component}",
            )
