"""/api/v1/metrics: ingest (write_metrics), queries and summaries (read_metrics)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import StringConstraints

from app.api.deps import (
    CanReadMetrics,
    CanWriteMetrics,
    CoreDep,
    DetectionDep,
    ReceiptDep,
    SessionDep,
    SettingsDep,
)
from app.api.pagination import DateTimeQuery, LabelFilter, Page, parse_label_filters
from app.audit.middleware import audit_in_transaction
from app.core.errors import error_responses
from app.metrics.decode import decode_batch
from app.metrics.schemas import (
    Baseline,
    IngestResult,
    PointOut,
    PointPage,
    Summary,
    UnknownComponent,
    ingest_body,
)
from app.metrics.service import MetricsService

router = APIRouter(prefix="/api/v1/metrics", tags=["metrics"])


async def get_service(session: SessionDep, core: CoreDep, detection: DetectionDep) -> MetricsService:
    # ``async def``: built on the event loop, not in a threadpool hop per request.
    return MetricsService(session, core, cache=detection.cache, evaluator=detection.evaluator)


ServiceDep = Annotated[MetricsService, Depends(get_service)]
# One `names` value: a metric name or a comma-separated list of them (what get_latest splits).
MetricNames = Annotated[
    str, StringConstraints(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*(,[a-zA-Z_:][a-zA-Z0-9_:]*)*$")
]
LabelQuery = Annotated[
    list[LabelFilter] | None, Query(description="key=value; repeat for several (exact series match)")
]


@router.post(
    "",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 413, 422, 429),
    openapi_extra=ingest_body(batch=False),
)
async def record_metric(
    receipt: ReceiptDep, request: Request, _: CanWriteMetrics, service: ServiceDep
) -> Any:
    """Record one point (``component``, ``metric_name``, ``value``, ``labels``, optional ``timestamp``)."""
    body = await request.body()
    batch = decode_batch(body, single=True)
    receipt.hold(*batch.components)  # its rule timers wait for these points until they are committed
    accepted = await service.ingest(batch)
    await audit_in_transaction(request, service.session, body, status.HTTP_201_CREATED)
    return {"accepted": accepted}


@router.post(
    "/batch",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 403, 413, 422, 429),
    openapi_extra=ingest_body(batch=True),
)
async def record_batch(receipt: ReceiptDep, request: Request, _: CanWriteMetrics, service: ServiceDep) -> Any:
    """Record up to 10,000 points: ``{"points": [...]}`` (or a bare list of points), or
    ``{"series": [...]}`` (each series once, its ``timestamps`` and ``values`` as arrays). All or
    nothing: a rejection lists the ``index`` and ``field`` of every bad point (and, for series, the
    ``series`` entry)."""
    body = await request.body()
    batch = decode_batch(body)
    receipt.hold(*batch.components)  # their rule timers wait for these points until they are committed
    accepted = await service.ingest(batch)
    # The audit row goes in the points' transaction: one commit per batch, not two.
    await audit_in_transaction(request, service.session, body, status.HTTP_201_CREATED)
    return {"accepted": accepted}


@router.get("", response_model=PointPage, responses=error_responses(400, 401, 403, 422))
async def get_metrics(
    _: CanReadMetrics,
    service: ServiceDep,
    page: Annotated[Page, Depends()],
    component: str | None = None,
    metric_name: str | None = None,
    start_time: DateTimeQuery = None,
    end_time: DateTimeQuery = None,
    labels: LabelQuery = None,
) -> PointPage:
    """Raw points, newest first."""
    rows = await service.query(
        component=component,
        metric_name=metric_name,
        labels=parse_label_filters(labels),
        start=start_time,
        end=end_time,
        limit=page.limit,
        offset=page.offset,
    )
    items = [PointOut.model_validate({**r, "timestamp": r["ts"]}) for r in rows]
    return PointPage(items=items, limit=page.limit, offset=page.offset)


@router.get("/latest", responses=error_responses(401, 403, 422))
async def get_latest(
    _: CanReadMetrics,
    service: ServiceDep,
    component: str | None = None,
    names: Annotated[
        list[MetricNames] | None, Query(description="metric names (repeat or comma-separate)")
    ] = None,
) -> list[dict[str, Any]]:
    """The latest point of every series (optionally of one component / some metric names)."""
    wanted = [n for item in names or [] for n in item.split(",") if n]
    return await service.latest(component, wanted or None)


@router.get("/summary", response_model=Summary, responses=error_responses(400, 401, 403, 422))
async def get_summary(
    _: CanReadMetrics,
    service: ServiceDep,
    component: str,
    metric_name: str,
    since: Annotated[float | None, Query(gt=0, le=400 * 86400, description="seconds back from now")] = None,
    start: DateTimeQuery = None,
    end: DateTimeQuery = None,
    labels: LabelQuery = None,
) -> dict[str, Any]:
    """count, mean, min, max, stddev, p50/p95/p99 over a range (rollups for whole buckets, raw at the
    edges)."""
    return await service.summary(
        component=component,
        metric_name=metric_name,
        labels=parse_label_filters(labels),
        since=since,
        start=start,
        end=end,
    )


@router.get("/components", response_model=list[UnknownComponent], responses=error_responses(401, 403))
async def unknown_components(_: CanReadMetrics, service: ServiceDep) -> list[dict[str, Any]]:
    """Components that sent metrics but are not in the registry (accepted, and listed)."""
    return await service.unknown_components()


@router.get("/baselines", response_model=list[Baseline], responses=error_responses(401, 403))
async def baselines(
    _: CanReadMetrics,
    session: SessionDep,
    settings: SettingsDep,
    detection: DetectionDep,
    component: str | None = None,
    metric_name: str | None = None,
) -> list[dict[str, Any]]:
    """The anomaly detectors' per-series baselines (as persisted by the rule evaluator)."""
    from app.detection.rules_service import RuleService

    rows = await RuleService(session, settings, detection.evaluator).baselines(component)
    return [r for r in rows if metric_name is None or r["metric_name"] == metric_name]
