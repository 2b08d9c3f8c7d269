"""Response shapes of /api/v1/replicas."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ReplicaOut(BaseModel):
    id: str
    region: str | None
    version: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    status: str
    live: bool
    this_replica: bool
    leases: int
    components: list[str]
    components_truncated: bool


class ReplicaPage(BaseModel):
    items: list[ReplicaOut]
    total: int
    limit: int
    offset: int
    unowned_components: int | None = None
