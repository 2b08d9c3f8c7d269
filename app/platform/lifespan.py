"""Startup and shutdown: checks the configuration and the database, fills the ``Runtime`` (engine,
sessionmaker, token codec, secret box), has ``compose`` build the domain objects, starts the loops and
stops them in order. Requests reach the runtime through ``app.state.runtime`` (read in
``app/api/deps.py`` only).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app import __version__
from app.auth.tokens import PasswordHasher, TokenCodec
from app.config.settings import Settings, production_problems, secret_key_problem
from app.core.errors import ConfigurationError
from app.db.engine import create_engine, create_sessionmaker
from app.db.migrate import current_revision, head_revision
from app.db.sqlite_lock import acquire_sqlite_lock
from app.platform.heap import trim_periodically
from app.platform.loops import LoopService
from app.platform.runtime import Runtime
from app.security.crypto import SecretBox

log = logging.getLogger("pipeline_guard")


def resolve_secret_key(settings: Settings) -> str:
    """The configured key; in development a generated one persisted under the data dir."""
    configured = settings.security.secret_key.get_secret_value() if settings.security.secret_key else None
    if configured:
        if problem := secret_key_problem(configured):
            if settings.env == "production":
                raise ConfigurationError(problem)
            log.warning("%s (acceptable only outside production)", problem)
        return configured
    if settings.env == "production":
        raise ConfigurationError("PIPELINE_SECRET_KEY is required in production")
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    log.warning("no PIPELINE_SECRET_KEY set: generated one at %s (development only)", path)
    return key


async def check_schema(engine: AsyncEngine) -> None:
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise ConfigurationError(
            f"database schema is at {current or 'nothing'} but this version needs {head}; "
            "run `pipeline-guard db upgrade` (make migrate) first"
        )


async def check_database_reachable(engine: AsyncEngine) -> None:
    """At boot the guard refuses to start without its database (a clear message, exit non-zero; the
    orchestrator retries). Once running, an outage is degraded mode, not a crash."""
    try:
        async with asyncio.timeout(10):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to connect at boot
        where = engine.url.render_as_string(hide_password=True)
        raise ConfigurationError(
            f"cannot reach the database at {where} at startup ({type(exc).__name__}: {str(exc)[:200]}); "
            "refusing to start — start the database (or fix PIPELINE_DATABASE_URL) and start the guard again"
        ) from None


# How long the start waits for every loop's first iteration before it settles the heap anyway.
HEAP_SETTLE_MAX_S = 120.0


async def settle_heap(services: list[LoopService], *, poll_s: float = 0.2) -> None:
    """Once every loop has run its first iteration (the scheduler has loaded the fleet: its entries,
    tracking and metric children; caches are warm), collect once and move what survives out of the
    cyclic GC's scans, as the start does for what it built. Those long-lived objects are otherwise
    scanned by every full collection: tens of milliseconds of a stalled event loop at 1,000
    components, on the path from a probe result to its healing action."""
    deadline = asyncio.get_running_loop().time() + HEAP_SETTLE_MAX_S
    while any(s.running and s.iterations < 1 for s in services):
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(poll_s)
    gc.collect()  # garbage frozen now would never be collected
    gc.freeze()


# Chooses, from the composed runtime, the loops to start (tests run only some; default: all of them).
ServiceBuilder = Callable[[Runtime], list[LoopService]]


def make_lifespan(
    state: Runtime, build_services: ServiceBuilder | None = None
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Runtime]]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Runtime]]:
        # Before anything else: SQLite mode is single-replica (a second process on the file is refused).
        sqlite_lock = acquire_sqlite_lock(state.settings.database_url)
        try:
            async with _lifespan_body() as value:
                yield value
        finally:
            if sqlite_lock is not None:
                sqlite_lock.release()

    @asynccontextmanager
    async def _lifespan_body() -> AsyncIterator[dict[str, Runtime]]:
        settings = state.settings
        if problems := production_problems(settings):
            raise ConfigurationError("refusing to start in production: " + "; ".join(problems))
        if not settings.security.enabled:
            log.warning("!!! SECURITY IS DISABLED: every request acts as an admin. Development only. !!!")
        state.codec = TokenCodec(
            resolve_secret_key(settings),
            issuer=settings.security.issuer,
            audience=settings.security.audience,
            expiry_seconds=settings.security.token_expiry,
        )
        state.hasher = PasswordHasher()
        state.secret_box = SecretBox.from_settings(settings)
        state.engine = create_engine(settings)
        state.sessionmaker = create_sessionmaker(state.engine)
        settling: asyncio.Task[None] | None = None
        trimming: asyncio.Task[None] | None = None
        try:
            await check_database_reachable(state.engine)
            await check_schema(state.engine)
            state.schema_ok = True
            state.metrics.up.set(1)
            state.metrics.info.labels(__version__, state.engine.dialect.name).set(1)
            from app.platform.compose import compose, select_services

            compose(state)
            services = select_services(state, build_services)
            state.services = services
            for service in services:
                await service.prepare()
            for service in services:
                service.start()
            log.info(
                "pipeline guard %s ready (%s, %d background services)",
                __version__,
                state.engine.dialect.name,
                len(services),
            )
            # Everything built so far lives as long as the process: keep it out of the cyclic GC's
            # scans, which otherwise dominate allocation-heavy requests (metric batches).
            gc.freeze()
            # ... and so is what the loops build in their first iterations.
            settling = asyncio.create_task(settle_heap(services), name="heap:settle")
            # The C heap's free pages (SQLite's driver threads free much of it) back to the system.
            trimming = asyncio.create_task(trim_periodically(), name="heap:trim")
            yield {"runtime": state}
        finally:
            for task in (settling, trimming):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            state.metrics.up.set(0)
            # Loops marked stop_first (the lease manager) hand their work over before the rest drain.
            first = [s for s in state.services if getattr(s, "stop_first", False)]
            for service in first:
                await service.stop()
            for service in reversed(state.services):
                if service not in first:
                    await service.stop()
            await state.engine.dispose()
            if state.limiter is not None:
                await state.limiter.aclose()

    return lifespan
