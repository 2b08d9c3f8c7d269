"""Registry of check kinds: the built-ins plus third-party kinds published through the
`pipeline_guard.checks` entry-point group, loaded lazily on first use (never at import time)."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from app.checks.base import CheckContext, CheckKind, CheckResult, guarded_run

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pipeline_guard.checks"


class UnknownCheckKind(KeyError):
    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def _builtin_kinds() -> list[CheckKind]:
    from app.checks.command import CommandCheck
    from app.checks.heartbeat import HeartbeatCheck
    from app.checks.http import HttpCheck
    from app.checks.plugin import PluginCheck
    from app.checks.tcp import TcpCheck

    return [HttpCheck(), TcpCheck(), CommandCheck(), HeartbeatCheck(), PluginCheck()]


class CheckRegistry:
    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._kinds: dict[str, Any] = {}
        self._load_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.Lock()
        # Entry points that failed to load: name -> short reason (shown by `config validate`).
        self.load_errors: dict[str, str] = {}

    def register(self, kind: Any, *, replace: bool = False) -> None:
        """Add a kind: any object with `name`, `validate(params, ctx=None)` and async `probe`
        (or a CheckKind subclass instance)."""
        name = getattr(kind, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError("a check kind needs a non-empty string `name`")
        if not callable(getattr(kind, "validate", None)) or not callable(getattr(kind, "probe", None)):
            raise TypeError(f"check kind {name!r} must define validate() and probe()")
        if name in self._kinds and not replace:
            raise ValueError(f"check kind {name!r} is already registered")
        self._kinds[name] = kind

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            for kind in _builtin_kinds():
                self._kinds.setdefault(kind.name, kind)
            if self._load_entry_points:
                self._load_third_party()
            self._loaded = True

    def _load_third_party(self) -> None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                kind = obj() if isinstance(obj, type) else obj
                if getattr(kind, "name", None) != ep.name:
                    raise ValueError(
                        f"its name {getattr(kind, 'name', None)!r} differs from the entry point's"
                    )
                if ep.name in self._kinds:
                    # A package must not silently replace a built-in (or another package's) kind.
                    raise ValueError("a kind with this name is already registered")
                self.register(kind)
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not break the others
                self.load_errors[ep.name] = f"{type(exc).__name__}: {exc}"[:200]
                log.warning("check kind entry point %r not loaded: %s", ep.name, self.load_errors[ep.name])

    def get(self, kind: str) -> Any:
        self._ensure_loaded()
        try:
            return self._kinds[kind]
        except KeyError:
            raise UnknownCheckKind(
                f"unknown check kind {kind!r} (known: {', '.join(self.kinds())})"
            ) from None

    def kinds(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._kinds)

    def validate(
        self, kind: str, params: Mapping[str, Any], ctx: CheckContext | None = None
    ) -> dict[str, Any]:
        """Normalised params; raises UnknownCheckKind or CheckConfigError."""
        return self.get(kind).validate(params, ctx)

    async def run(self, kind: str, params: Mapping[str, Any], ctx: CheckContext) -> CheckResult:
        """Run a check; never raises (an unknown kind is a DOWN result too)."""
        try:
            impl = self.get(kind)
        except UnknownCheckKind as exc:
            return CheckResult.down(str(exc))
        return await guarded_run(impl, params, ctx)


@functools.cache
def default_registry() -> CheckRegistry:
    """The process-wide registry, built on first call."""
    return CheckRegistry()
