"""Ping URLs for batch jobs and cron, healthchecks.io style: the URL alone is the credential.

    GET|HEAD|POST /ping/<token>              the run succeeded
    GET|HEAD|POST /ping/<token>/start        a run started (its duration is measured to the next ping)
    GET|HEAD|POST /ping/<token>/fail         the run failed: the component is unhealthy at once
    GET|HEAD|POST /ping/<token>/<exit-code>  0 = success, 1..255 = failure (``cmd; curl .../$?``)

A POST body is kept (the first ``PING_LOG_MAX_BYTES``) as the run's log. One query parameter is
read, ``rid`` (a UUID, healthchecks.io's run id): the run the ping reports, so a finish is timed from
its own ``/start`` and a late finish of a run a recovery action replaced judges nothing
(docs/LIFECYCLE.md rule 12). Any other is refused: ``?status=fail`` must never be read as a success.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Request

from app.api.deps import ReceiptDep, SchedulerDep, SessionDep
from app.core.errors import NotFound, PayloadTooLarge, ValidationFailed, error_responses
from app.db.types import utcnow
from app.monitoring.hearing import Receipt
from app.monitoring.heartbeat import HeartbeatService, hash_ping_token
from app.monitoring.run_ids import RUN_ID, RUN_ID_RULE, run_id
from app.monitoring.scheduler import Scheduler
from app.monitoring.schemas import HeartbeatOut

router = APIRouter(prefix="/ping", tags=["heartbeats"])

PING_LOG_MAX_BYTES = 10_000  # kept as the run's log; the rest of a longer body is dropped
PING_BODY_REFUSED_BYTES = 1_000_000  # a declared body larger than this is refused outright (413)
METHODS = ["GET", "HEAD", "POST"]


def _ping_route(path: str):
    """One route per method, each with its own OpenAPI operation id (one route serving several
    methods would repeat its operation id, which the OpenAPI document must not)."""

    def register(endpoint):
        for method in METHODS:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                response_model=HeartbeatOut,
                responses=RESPONSES,
                operation_id=f"{endpoint.__name__}_{method.lower()}",
                openapi_extra={"parameters": [RUN_ID_PARAMETER]},
            )
        return endpoint

    return register


# Read by ``_run_id`` (which refuses every other query parameter), documented here.
RUN_ID_PARAMETER = {
    "name": RUN_ID,
    "in": "query",
    "required": False,
    "schema": {"type": "string", "format": "uuid"},
    "description": "the run this ping reports (healthchecks.io's run id): a finish is timed from the "
    "same rid's /start, and one of a run that started before the recovery action in flight is stored "
    "but not judged",
}
RESPONSES = error_responses(404, 409, 413, 422)  # 409: the token's component is not a heartbeat job


async def _run_log(request: Request) -> str | None:
    """The request body, bounded: at most PING_LOG_MAX_BYTES are read and kept."""
    if request.method != "POST":
        return None
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > PING_BODY_REFUSED_BYTES:
        raise PayloadTooLarge(
            f"a ping body is kept as the run's log up to {PING_LOG_MAX_BYTES} bytes; "
            f"{declared} bytes is too large"
        )
    kept = bytearray()
    truncated = False
    async for chunk in request.stream():
        room = PING_LOG_MAX_BYTES - len(kept)
        if len(chunk) > room:
            kept.extend(chunk[:room])
            truncated = True
            break
        kept.extend(chunk)
    if not kept:
        return None
    text = kept.decode("utf-8", errors="replace")
    return text + "\n[log truncated]" if truncated else text


def _run_id(request: Request) -> str | None:
    """The ping's ``rid`` (lower-cased), None without one. Refused, before anything is read or
    stored: any other query parameter, a second ``rid``, a ``rid`` that is no UUID."""
    params = request.query_params
    unknown = sorted({n for n in params if n != RUN_ID})
    if unknown:
        raise ValidationFailed(
            "ping URLs take no query parameter but rid: use /start, /fail or /<exit-code> in the path",
            details={"fields": [{"field": f"query.{n}", "message": "unknown parameter"} for n in unknown]},
        )
    values = params.getlist(RUN_ID)
    if not values:
        return None
    try:
        (value,) = values  # a second rid is a ValueError too
        return run_id(value)
    except ValueError:
        raise ValidationFailed(
            "rid names the run the ping reports: one UUID (8-4-4-4-12 hex digits)",
            details={"fields": [{"field": f"query.{RUN_ID}", "message": RUN_ID_RULE}]},
        ) from None


async def _ping(
    request: Request,
    background: BackgroundTasks,
    session,
    scheduler: Scheduler,
    receipt: Receipt,
    token: str,
    status: str,
    note: str | None = None,
) -> HeartbeatOut:
    rid = _run_id(request)
    service = HeartbeatService(session)
    component = await service.component_by_ping_token(hash_ping_token(token))
    if component is None:
        raise NotFound("no component has this ping token")
    receipt.hold(component.name)  # the token named it: its heartbeat waits for this ping (body included)
    log_text = await _run_log(request)
    request.state.audit_actor = f"ping-token:{component.name}"
    message = "\n".join(part for part in (note, log_text) if part) or None
    received_at = utcnow()
    recorded = await service.record(
        component,
        status=status,
        duration_s=None,
        message=message,
        source="ping-url",
        now=received_at,
        max_message=PING_LOG_MAX_BYTES + 100,
        rid=rid,
    )
    if recorded.judged:  # an unjudged ping left the state as it was: nothing new to check
        # After the response, i.e. after the commit: the scheduler must read the stored ping.
        background.add_task(scheduler.request_check, component.id)
    # received_at: the ping's time, stored as state.last_ping_at when judged
    return HeartbeatOut.answer(component.name, status, received_at, recorded.duration_s, rid, recorded.judged)


@_ping_route("/{token}")
async def ping_success(
    token: str,
    request: Request,
    background: BackgroundTasks,
    receipt: ReceiptDep,
    session: SessionDep,
    scheduler: SchedulerDep,
) -> HeartbeatOut:
    """The run succeeded."""
    return await _ping(request, background, session, scheduler, receipt, token, "success")


@_ping_route("/{token}/start")
async def ping_start(
    token: str,
    request: Request,
    background: BackgroundTasks,
    receipt: ReceiptDep,
    session: SessionDep,
    scheduler: SchedulerDep,
) -> HeartbeatOut:
    """A run started."""
    return await _ping(request, background, session, scheduler, receipt, token, "start")


@_ping_route("/{token}/fail")
async def ping_fail(
    token: str,
    request: Request,
    background: BackgroundTasks,
    receipt: ReceiptDep,
    session: SessionDep,
    scheduler: SchedulerDep,
) -> HeartbeatOut:
    """The run failed: the component becomes unhealthy at once and its alert fires."""
    return await _ping(request, background, session, scheduler, receipt, token, "fail")


@_ping_route("/{token}/{exit_code}")
async def ping_exit_code(
    token: str,
    exit_code: Annotated[int, Path(ge=0, le=255, description="the job's exit code")],
    request: Request,
    background: BackgroundTasks,
    receipt: ReceiptDep,
    session: SessionDep,
    scheduler: SchedulerDep,
) -> HeartbeatOut:
    """The run ended with this exit code: 0 is a success, 1..255 a failure."""
    code = exit_code
    return await _ping(
        request,
        background,
        session,
        scheduler,
        receipt,
        token,
        "success" if code == 0 else "fail",
        note=None if code == 0 else f"exit code {code}",
    )
