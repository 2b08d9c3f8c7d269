"""Message catalogs (``app/locales/<lang>.json``) and rendering of a notification per language.

JSON catalogs instead of gettext ``.mo`` files: nothing to compile at build time, and a missing key
falls back to English instead of showing the message id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from app.core.locales import LOCALES_DIR

DEFAULT_LANGUAGE = "en"


@cache
def catalog(language: str) -> dict[str, str]:
    path = LOCALES_DIR / f"{language}.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def translate(key: str, language: str, **values: Any) -> str:
    template = catalog(language).get(key) or catalog(DEFAULT_LANGUAGE).get(key) or key
    # Values are inserted, never interpreted as format strings (alert text is untrusted).
    return template.format_map(_Blank({k: "" if v is None else v for k, v in values.items()}))


@dataclass(frozen=True)
class RenderedMessage:
    title: str
    severity: str
    severity_label: str
    fields: list[tuple[str, str]]  # (translated title, value)

    @property
    def text(self) -> str:
        return self.title


def render(payload: dict[str, Any], language: str, *, channel_name: str = "") -> RenderedMessage:
    """What to say about a notification payload (see ``notify.service.snapshot``) in ``language``."""
    kind = payload.get("kind", "firing")
    alert = payload.get("alert") or {}
    severity = alert.get("severity", "info")
    severity_label = translate(f"severity.{severity}", language) if severity else ""
    values = {
        "severity": severity_label,
        "component": alert.get("component", ""),
        "count": alert.get("count", 1),
        "channel": channel_name,
    }
    title = translate(f"title.{kind}", language, **values)
    if kind == "test":
        return RenderedMessage(
            title,
            "info",
            translate("severity.info", language),
            [(translate("field.message", language), translate("text.test", language, **values))],
        )
    fields = [
        (translate("field.component", language), str(alert.get("component", ""))),
        (translate("field.message", language), str(alert.get("message", ""))),
    ]
    if kind == "resolved" and alert.get("resolution_action"):
        fields.append((translate("field.resolution", language), str(alert["resolution_action"])))
    return RenderedMessage(title, severity, severity_label, fields)
