"""Every failure leaves as the error envelope; a 500 never carries exception text."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import Scope, Send

from app.core.errors import PipelineGuardError, envelope
from app.db.errors import sqlstate

log = logging.getLogger("pipeline_guard.errors")

_HTTP_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


def _response(
    status: int,
    error_type: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(envelope(error_type, message, details), status_code=status, headers=headers)


def _loc(loc: tuple[str | int, ...]) -> str:
    parts = [str(p) for p in loc]
    return ".".join(parts)


async def _guard_error(_request: Request, exc: PipelineGuardError) -> JSONResponse:
    if exc.status_code >= 500:
        log.error("%s: %s", exc.error_type, exc.message)
    return _response(exc.status_code, exc.error_type, exc.message, exc.details, exc.headers or None)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = []
    for err in exc.errors():
        item = {
            "field": _loc(err.get("loc", ())),
            "message": err.get("msg", "invalid"),
            "type": err.get("type"),
        }
        fields.append(item)
    return _response(422, "validation_error", "the request is not valid", {"fields": fields})


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else _HTTP_TYPES.get(exc.status_code, "error")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        # Starlette names only the first route that matched the path; a path served by several
        # routes (GET list + POST create) must list every method (RFC 9110 15.5.6).
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
    return _response(exc.status_code, _HTTP_TYPES.get(exc.status_code, "error"), message, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    scope = {**request.scope, "method": "GET"}
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(scope)[0] != Match.NONE:
            methods |= set(route_methods)
    return sorted(methods)


async def _integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
    log.info("integrity error: %s", exc.orig)
    return _response(
        409, "conflict", "the change conflicts with existing data (duplicate or missing reference)"
    )


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    state = getattr(request.app.state, "runtime", None)
    if state is not None and state.metrics is not None:
        state.metrics.db_unavailable.inc()
    log.warning("database unavailable: %s", type(exc).__name__)
    return _response(
        503, "service_unavailable", "the database is unavailable; retry shortly", headers={"Retry-After": "5"}
    )


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # Driver errors raised outside SQLAlchemy (the raw asyncpg connection COPY uses) arrive here.
    if _is_unavailable(exc):
        return await _database_unavailable(request, exc)
    if any(_code(c) in _BAD_TEXT_SQLSTATES for c in _chain(exc)):
        return _response(422, "validation_error", "text contains characters that cannot be stored (e.g. NUL)")
    error_id = uuid.uuid4().hex[:12]
    log.exception("unhandled error %s on %s %s", error_id, request.method, request.url.path)
    return _response(
        500, "internal_error", "internal error; quote this id when reporting it", {"error_id": error_id}
    )


# SQLSTATEs meaning "no database for us right now": connection exceptions (class 08), too many
# connections, shutdown/crash/starting up (asyncpg's CannotConnectNowError arrives as a plain
# DBAPIError), and a database that was set not to accept connections (55000 at connect time).
_UNAVAILABLE_SQLSTATES = {"53300", "53400", "57P01", "57P02", "57P03", "57P05"}
_UNAVAILABLE_DRIVER_ERRORS = {
    "ConnectionDoesNotExistError",
    "ConnectionFailureError",
    "ClientCannotConnectError",
    "InternalClientError",
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) > 8:
            continue
        seen.add(id(current))
        yield current
        todo.extend((getattr(current, "orig", None), current.__cause__, current.__context__))


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return str(code) if code else None


def _is_unavailable(exc: BaseException) -> bool:
    for cause in _chain(exc):
        if isinstance(cause, OSError | TimeoutError) or type(cause).__name__ in _UNAVAILABLE_DRIVER_ERRORS:
            return True
        code = _code(cause)
        if code and (code.startswith("08") or code in _UNAVAILABLE_SQLSTATES):
            return True
        if code == "55000" and "not currently accepting connections" in str(cause):
            return True
    return False


def _is_connection_error(exc: DBAPIError) -> bool:
    return (
        bool(getattr(exc, "connection_invalidated", False))
        or isinstance(exc, (OperationalError, InterfaceError))
        or _is_unavailable(exc)
    )


# SQLSTATEs for text the database cannot store (e.g. a NUL character in a Postgres text column).
_BAD_TEXT_SQLSTATES = {"22021", "22P05"}


async def _dbapi_error(request: Request, exc: DBAPIError) -> JSONResponse:
    if _is_connection_error(exc):
        return await _database_unavailable(request, exc)
    if sqlstate(exc) in _BAD_TEXT_SQLSTATES:
        return _response(422, "validation_error", "text contains characters that cannot be stored (e.g. NUL)")
    return await _unhandled(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types every handler as taking Exception; each is registered for its own exception
    # class, so it only ever receives that class (the handler type is too wide, not the handler).
    app.add_exception_handler(PipelineGuardError, _guard_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(IntegrityError, _integrity_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _dbapi_error)  # type: ignore[arg-type]
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(ConnectionError, _database_unavailable)
    app.add_exception_handler(TimeoutError, _database_unavailable)
    app.add_exception_handler(Exception, _unhandled)


def has_nul(scope: Scope) -> bool:
    """A NUL character in the path or query string can never be stored or matched (Postgres text
    cannot hold NUL): such a request is refused with 400 before it reaches a database driver."""
    return "\x00" in scope["path"] or b"%00" in scope.get("query_string", b"")


async def send_error(
    send: Send, status: int, error_type: str, message: str, details: dict[str, Any] | None = None
) -> None:
    """An error envelope sent straight from a middleware (the app's handlers are not reached)."""
    response = _response(status, error_type, message, details)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
