"""Registry of recovery strategies (one per runtime, built at startup; ``config validate`` builds its
own): the built-ins plus plugins published through the entry-point
group ``pipeline_guard.actions`` (loaded lazily, on first lookup, never at import time).

A plugin entry point names either a ``Strategy`` subclass (instantiated with no arguments, or with
``settings`` when its constructor accepts it) or a ready instance.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from app.healing.secretbox import HealingSecrets
from app.healing.strategies.base import Strategy, StrategyConfigError

log = logging.getLogger("pipeline_guard.healing")

ENTRY_POINT_GROUP = "pipeline_guard.actions"


class UnknownStrategy(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _instantiate(obj: Any, settings: Any) -> Strategy:
    if isinstance(obj, Strategy):
        return obj
    if inspect.isclass(obj) and issubclass(obj, Strategy):
        params = inspect.signature(obj).parameters
        # Subclasses may take the settings (the base class takes nothing): checked just above.
        factory: Callable[..., Strategy] = obj
        return factory(settings) if "settings" in params else factory()
    raise TypeError(f"{obj!r} is not a Strategy class or instance")


class StrategyRegistry:
    """``secret_box``: the app's SecretBox, for webhook headers marked secret (None: such values are
    refused, as in ``config validate``)."""

    def __init__(
        self, settings: Any = None, *, secret_box: Any = None, load_entry_points: bool = True
    ) -> None:
        self.settings = settings
        self.secrets = HealingSecrets(secret_box)
        self._strategies: dict[str, Strategy] = {}
        self._aliases: dict[str, str] = {}
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.Lock()
        self.load_errors: dict[str, str] = {}
        for strategy in self._builtins():
            self.register(strategy)

    def _builtins(self) -> list[Strategy]:
        from app.healing.strategies.command import CommandStrategy
        from app.healing.strategies.kubernetes import KubernetesStrategy
        from app.healing.strategies.notify_only import NotifyOnlyStrategy
        from app.healing.strategies.webhook import WebhookStrategy

        return [
            CommandStrategy(self.settings, self.secrets),
            WebhookStrategy(self.settings, self.secrets),
            KubernetesStrategy(),
            NotifyOnlyStrategy(),
        ]

    def register(self, strategy: Strategy, *, replace: bool = False) -> None:
        kind = getattr(strategy, "kind", None)
        if not isinstance(kind, str) or not kind:
            raise ValueError("a strategy needs a non-empty string `kind`")
        if kind in self._strategies and not replace:
            raise ValueError(f"strategy {kind!r} is already registered")
        self._strategies[kind] = strategy
        for alias in getattr(strategy, "aliases", ()):
            self._aliases[alias] = kind

    def _ensure_loaded(self) -> None:
        if self._loaded or not self._load_entry_points:
            return
        with self._lock:
            if self._loaded:
                return
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in self._strategies or ep.name in self._aliases:
                    self.load_errors[ep.name] = "name clashes with a built-in strategy"
                    continue
                try:
                    strategy = _instantiate(ep.load(), self.settings)
                    if strategy.kind != ep.name:
                        raise ValueError(
                            f"entry point {ep.name!r} loads a strategy of kind {strategy.kind!r}"
                        )
                    self.register(strategy)
                except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                    self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"[:300]
                    log.warning("healing plugin %s failed to load: %s", ep.name, self.load_errors[ep.name])
            self._loaded = True

    def canonical(self, kind: str) -> str:
        return self._aliases.get(kind, kind)

    def kinds(self) -> set[str]:
        self._ensure_loaded()
        return set(self._strategies) | set(self._aliases)

    def get(self, kind: str) -> Strategy:
        kind = self.canonical(kind)
        if kind not in self._strategies:
            self._ensure_loaded()
        try:
            return self._strategies[self.canonical(kind)]
        except KeyError:
            raise UnknownStrategy(
                f"unknown strategy {kind!r}; known: {', '.join(sorted(self.kinds()))}"
            ) from None

    def validate(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        strategy = self.get(kind)
        return strategy.validate(params)


__all__ = [
    "ENTRY_POINT_GROUP",
    "StrategyConfigError",
    "StrategyRegistry",
    "UnknownStrategy",
]
