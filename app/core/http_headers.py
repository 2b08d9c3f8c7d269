"""What an outgoing HTTP header may hold (RFC 9110): checked when a check or a recovery webhook is
saved, so a header aiohttp would refuse at send time is a 422, not a probe or heal failing later."""

from __future__ import annotations

import re
from typing import TypeGuard

# A field name is a token (RFC 9110, 5.1): no spaces, separators, controls or non-ASCII characters.
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A field value may not hold CR/LF (they would split the header), NUL, the other C0 controls (tab
# excepted) or DEL (RFC 9110, 5.5).
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def valid_name(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and bool(TOKEN.fullmatch(name))


def valid_value(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and not CONTROL_CHARS.search(value)
