"""Placeholder registry until the check kinds land (replaced by the probes branch)."""

from __future__ import annotations

from functools import lru_cache


class CheckRegistry:
    def kinds(self) -> set[str]:
        return {"http", "tcp", "command", "heartbeat"}

    def validate(self, kind: str, params: dict) -> dict:
        return params


@lru_cache(maxsize=1)
def default_registry() -> CheckRegistry:
    return CheckRegistry()
