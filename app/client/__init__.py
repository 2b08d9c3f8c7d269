"""Python client for pipelines: report metrics, heartbeats and job runs to a Pipeline Guard.

Shipped inside the guard's own distribution as ``app.client`` rather than as a separate top-level
package: one version number, one release, and the client is tested in the same suite against the
very routes it calls, so the two cannot drift apart. It depends only on ``httpx`` (already a
dependency of the guard), and importing it does not import the server (no FastAPI, SQLAlchemy or
settings are touched), so a pipeline that ``pip install pipeline-guard`` pays only for httpx.

    from app.client import GuardClient

    with GuardClient("http://guard:8080", token="...") as guard:
        with guard.job("nightly-etl"):
            guard.record_metric("nightly-etl", "rows", 1234)

The client never crashes the pipeline it reports for: failures are logged on the
``pipeline_guard.client`` logger and only raised when ``raise_errors=True``.
"""

from app.client.aio import AsyncGuardClient
from app.client.core import GuardAPIError, GuardClientError, GuardConnectionError, MetricPoint
from app.client.sync import GuardClient

__all__ = [
    "AsyncGuardClient",
    "GuardAPIError",
    "GuardClient",
    "GuardClientError",
    "GuardConnectionError",
    "MetricPoint",
]
