"""Run ids (healthchecks.io's ``rid``): the run a heartbeat reports, one UUID in its 8-4-4-4-12 form.

Read by the ping URLs (``?rid=``) and the JSON heartbeat API (``"rid"`` in the body) alike: a finish
naming its run is timed from that run's own ``start``, and a late finish of a run that started before
the recovery action in flight is stored but judges nothing (docs/LIFECYCLE.md rule 12).
"""

from __future__ import annotations

import re

RUN_ID = "rid"
RUN_ID_RULE = "must be one UUID"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def run_id(value: str) -> str:
    """``value`` as a run id, lower-cased (the form stored); ValueError when it is no UUID in the
    8-4-4-4-12 form (no braces, no ``urn:uuid:``, no hyphen-less hex)."""
    if not _UUID.fullmatch(value):
        raise ValueError(f"{RUN_ID_RULE} (8-4-4-4-12 hex digits)")
    return value.lower()
