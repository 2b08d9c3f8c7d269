"""Providers of extra ``/api/v1/status/detailed`` sections (healing stats, cache hit rate, ...).

The runtime has one (``runtime.status_sections``); ``compose`` registers the domains' providers with
``sections.register("healing", provider)`` or ``sections["cache"] = provider``. A provider is called
with the runtime if it takes an argument, and may be sync or async; it returns a dict.
"""

from __future__ import annotations

import inspect
from typing import Any


class StatusSections:
    def __init__(self) -> None:
        self._providers: dict[str, Any] = {}

    def register(self, name: str, provider: Any) -> None:
        self._providers[name] = provider

    __setitem__ = register

    def __getitem__(self, name: str) -> Any:
        return self._providers[name]

    def names(self) -> list[str]:
        return list(self._providers)

    async def collect(self, state: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, provider in list(self._providers.items()):  # a provider may register another
            try:
                takes_state = bool(inspect.signature(provider).parameters)
                value = provider(state) if takes_state else provider()
                out[name] = await value if inspect.isawaitable(value) else value
            except Exception as exc:  # noqa: BLE001 - one broken section must not break the page
                out[name] = {"error": type(exc).__name__}
        return out
