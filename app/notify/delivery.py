"""One bounded, SSRF-checked send of a notification, and what its outcome means for the outbox."""

from __future__ import annotations

import random
from dataclasses import dataclass

import aiohttp

from app.config.settings import Settings
from app.notify.channels import ChannelKind, HttpChannelKind, OutgoingNotification, OwnTransportChannelKind
from app.outbound.http import OutboundResponse, bounded_request
from app.outbound.ssrf import UnsafeURL, check_url_async

# Worth retrying: the receiver may get better. Any other 4xx means the request itself is wrong.
RETRYABLE_4XX = {408, 425, 429}
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class SendResult:
    response: OutboundResponse
    permanent: bool = False  # never retry (SSRF refusal, a 4xx that will not change)

    @property
    def ok(self) -> bool:
        return self.response.ok


async def send(
    http: aiohttp.ClientSession,
    kind: ChannelKind,
    config: dict,
    outgoing: OutgoingNotification,
    settings: Settings,
) -> SendResult:
    if isinstance(kind, OwnTransportChannelKind):  # e-mail: the kind speaks its own protocol, as bounded
        response, permanent = await kind.deliver(config, outgoing, settings)
        return SendResult(response, permanent=permanent)
    if not isinstance(kind, HttpChannelKind):
        raise TypeError(f"channel kind {kind.kind!r} neither builds HTTP requests nor delivers itself")
    request = kind.build(config, outgoing)
    try:
        await check_url_async(request.url, settings.security.ssrf_allowlist)
    except UnsafeURL as exc:
        return SendResult(OutboundResponse(status=None, error=f"refused: {exc}"), permanent=True)
    alerting = settings.alerting
    response = await bounded_request(
        http,
        request.method,
        request.url,
        headers=request.headers,
        data=request.body,
        timeout=alerting.request_timeout,
        max_response_bytes=alerting.max_response_bytes,
        max_redirects=0,
    )
    permanent = (response.error is not None and response.error.startswith("refused by SSRF policy")) or (
        response.error is None
        and response.status is not None
        and 400 <= response.status < 500
        and response.status not in RETRYABLE_4XX
    )
    return SendResult(response, permanent=permanent)


def retry_delay(attempts: int, settings: Settings, retry_after: float | None = None) -> float:
    """Exponential back-off with up to 20% jitter; a receiver's Retry-After wins when it asks for longer."""
    alerting = settings.alerting
    delay = min(alerting.retry_max, alerting.retry_base * (2 ** max(0, attempts - 1)))
    delay *= 1 + random.uniform(0, 0.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay
