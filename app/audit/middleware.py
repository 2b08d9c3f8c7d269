"""Appends one audit row per control-plane write attempt (POST/PUT/PATCH/DELETE under /api/v1).

Attempts are audited with their status code, refusals (401/403/422...) included: a denied change is
exactly what an auditor wants to see. The row is written in its own transaction once the handler
has finished, so a failed change still leaves its trace. Exceptions: the token endpoint (logins are
counted in the security stats, and a form body holds a password) and requests refused by the rate
limiter before they reach the app (also counted there, and a flood must not flood the table).

``before``/``after`` summaries: the request body with secret-looking keys masked (cheap, always),
plus what a route adds with ``audit_note(request, before=..., after=...)``.

A route whose success is decided by its own transaction (metric ingest) may write its row in that
transaction instead (``audit_in_transaction``): the same row, with the status the route answers,
committed with the change or not at all. The middleware then writes nothing for that request,
unless the transaction did not commit or the response's status is another one: then it writes the
row as usual. Either way every attempt has its row, and a 2xx never goes out for a change whose
row was not stored.
"""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, event, insert
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db.models import AuditEntry
from app.db.session import session_scope
from app.db.types import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession
from app.security.crypto import MASK

log = logging.getLogger("pipeline_guard.audit")

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Request-state keys: how a route builds this request's row, and the status of a row committed by it.
_ENTRY = "audit_entry"
_COMMITTED = "audit_committed"
NOT_AUDITED = {"/api/v1/auth/token"}
MAX_BODY_CAPTURE = 8192
MAX_SUMMARY_CHARS = 2000
# A recovery command's "env" holds tokens under any name; "auth", "passw" and "pwd" cover body fields.
SECRET_WORDS = (
    "passw",
    "pwd",
    "secret",
    "token",
    "key",
    "url",
    "auth",
    "headers",
    "credential",
    "signature",
    "cookie",
    "env",
)


def redact(value: Any) -> Any:
    """Mask every value under a secret-looking key, recursively."""
    if isinstance(value, dict):
        return {
            k: (MASK if any(w in str(k).lower() for w in SECRET_WORDS) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value[:50]]
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    return value


def _bounded(summary: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(summary, default=str)
    if len(text) <= MAX_SUMMARY_CHARS:
        return summary
    return {"truncated": True, "keys": sorted(summary)[:20]}


def audit_note(request: Request, *, before: Any = None, after: Any = None) -> None:
    """Let a route add a before/after summary of what it changed to its audit row."""
    note = request.scope.setdefault("state", {}).setdefault("audit", {})
    if before is not None:
        note["before"] = redact(before)
    if after is not None:
        note["after"] = redact(after)


def audit_actor(request: Request, name: str) -> None:
    """Name a caller that is not a user (an integration authenticated by its own token)."""
    request.scope.setdefault("state", {})["audit_actor"] = name


async def audit_in_transaction(
    request: Request, session: AsyncSession, body: bytes, status_code: int
) -> None:
    """Insert this request's audit row in ``session`` (the request's transaction), as answering
    ``status_code``; once that transaction commits the middleware writes no row of its own. Nothing
    happens when the request is not audited (audit logging off, a path that is not). One Core
    insert: the ORM's unit of work for a single row cost more than the row."""
    state = request.scope.get("state", {})
    fields = state.get(_ENTRY)
    if fields is None:
        return
    table = cast(Table, AuditEntry.__table__)  # a declarative __table__ is typed FromClause
    await session.execute(insert(table), [fields(body[:MAX_BODY_CAPTURE], status_code)])

    def committed(_session: Any) -> None:
        state[_COMMITTED] = status_code

    event.listen(session.sync_session, "after_commit", committed, once=True)


def _client(state, scope: Scope) -> str | None:
    from app.api.ratelimit import TrustedProxies, client_address

    proxies = state.limiter.proxies if state.limiter is not None else TrustedProxies([])
    try:
        return client_address(scope, proxies)[:64] or None
    except Exception:  # noqa: BLE001 - an odd forwarded header must not lose the row
        client = scope.get("client")
        return client[0][:64] if client else None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, state_getter):
        self.app = app
        self.state_getter = state_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in WRITE_METHODS
            or not scope["path"].startswith("/api/v1/")
            or scope["path"] in NOT_AUDITED
        ):
            await self.app(scope, receive, send)
            return
        state = self.state_getter()
        if not state.settings.compliance.audit_logging:
            await self.app(scope, receive, send)
            return
        captured = bytearray()
        status_code = 500
        request_state = scope.setdefault("state", {})
        request_state[_ENTRY] = partial(self._fields, state, scope)

        async def capturing_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(captured) < MAX_BODY_CAPTURE:
                captured.extend(message.get("body", b"")[: MAX_BODY_CAPTURE - len(captured)])
            return message

        async def capturing_send(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, capturing_receive, capturing_send)
        finally:
            del request_state[_ENTRY]  # (it holds the scope: no cycle left behind)
            if request_state.get(_COMMITTED) != status_code:
                await self._write(state, scope, bytes(captured), status_code)

    def _fields(self, state, scope: Scope, body: bytes, status_code: int) -> dict[str, Any]:
        """The audit row of this request (columns), answered with ``status_code``; ``body``: its
        first bytes."""
        request_state = scope.get("state", {})
        principal = request_state.get("principal")
        route = scope.get("route")
        template = getattr(route, "path", None) or scope["path"]
        headers = dict(scope.get("headers", []))
        summary: dict[str, Any] = {}
        if body and b"json" in headers.get(b"content-type", b""):
            try:
                summary["request"] = redact(json.loads(body))
            except (ValueError, RecursionError):  # a hostile body (nested 1,000 deep) still gets its row
                summary["request"] = {"unparsed_bytes": len(body)}
        elif body:
            summary["request"] = {"bytes": len(body)}
        summary.update(request_state.get("audit", {}))
        client = _client(state, scope)
        return {
            "at": utcnow(),
            "username": principal.username if principal else request_state.get("audit_actor"),
            "role": str(principal.role) if principal else None,
            "action": f"{scope['method']} {template}",
            "method": scope["method"],
            "path": scope["path"][:512],
            "target": {k: str(v) for k, v in (scope.get("path_params") or {}).items()},
            "summary": _bounded(summary),
            "client": client,
            "request_id": request_state.get("request_id"),
            "status_code": status_code,
        }

    async def _write(self, state, scope: Scope, body: bytes, status_code: int) -> None:
        if state.sessionmaker is None:
            return
        entry = AuditEntry(**self._fields(state, scope, body, status_code))
        template = entry.action.partition(" ")[2]
        try:
            async with session_scope(state.sessionmaker) as session:
                session.add(entry)
        except Exception as exc:  # noqa: BLE001 - the change happened; losing its audit row is logged loudly
            log.error(
                "could not write the audit row for %s %s: %s", scope["method"], template, type(exc).__name__
            )
