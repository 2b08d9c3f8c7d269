"""The message catalogs shipped with the guard (``app/locales/<lang>.json``): which languages exist.

Kept here, below both the settings (which check ``alerting.default_language``) and notifications
(which render with a catalog), so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parents[1] / "locales"


def available_languages() -> list[str]:
    return sorted(p.stem for p in LOCALES_DIR.glob("*.json"))


def check_language(language: str) -> str:
    """``language`` if a catalog exists for it, else a ValueError naming the ones that do."""
    known = available_languages()
    if language not in known:
        raise ValueError(f"must be one of {', '.join(known)}")
    return language
