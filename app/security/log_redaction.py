"""Keeps credentials that arrive in URLs out of the access log.

Ping tokens may be sent as ``?token=`` (clients that cannot set headers) or as the last segment of
``/ping/<token>``; API keys and signatures sometimes travel in query strings too. Uvicorn's access
log writes the whole request target, so this filter (installed on the log handler by
``configure_logging``) masks secret-looking query values and ping path tokens before any record is
formatted, whatever logger it came from.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, quote, urlencode

from app.security.check_secrets import is_secret_query_name

MASK = "***"
_PING_PATH = re.compile(r"(/ping/)[^/?#\s]+")


def redact_target(target: str) -> str:
    """A request target (path + query) with its credentials masked."""
    path, sep, query = target.partition("?")
    path = _PING_PATH.sub(rf"\g<1>{MASK}", path)
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_secret_query_name(k) for k, _ in pairs):
        query = urlencode(
            [(k, MASK if is_secret_query_name(k) else v) for k, v in pairs], quote_via=quote, safe="*"
        )
    return f"{path}?{query}"


class RedactUrlCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn.access: args = (client, method, full_path, http_version, status)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str):
                args[2] = redact_target(args[2])
                record.args = tuple(args)
        return True
