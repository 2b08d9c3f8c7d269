"""A thin async client for the few Kubernetes API calls the healing strategies make.

No SDK: the guard needs six REST calls, and the official clients bring a large dependency tree and
their own threading. Every call is bounded (a deadline and a cap on the bytes read), redirects are
not followed (they would carry the bearer token elsewhere), and failures surface as one exception
type, ``KubeError``, whose message is safe to show (it never includes credentials).
"""

from __future__ import annotations

import json
import time
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from app.core.deadlines import lenient_timeout
from app.integrations.kube_config import (
    KubeConfig,
    KubeConfigError,
    load_incluster,
    load_kubeconfig,
    read_small_file,
)
from app.outbound.http import NO_AIOHTTP_TIMEOUT

__all__ = [
    "RESTARTED_AT_ANNOTATION",
    "KubeClient",
    "KubeConfig",
    "KubeConfigError",
    "KubeError",
    "load_incluster",
    "load_kubeconfig",
    "workload_path",
]

RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
STRATEGIC_MERGE = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# Bound service-account tokens are rotated by the kubelet (about hourly); client-go re-reads the
# file about once a minute, and so do we.
TOKEN_REREAD_S = 60.0

_PLURALS = {"deployment": "deployments", "statefulset": "statefulsets", "daemonset": "daemonsets"}
_MAX_MESSAGE_CHARS = 300


class KubeError(Exception):
    """An API call failed. ``status`` is the HTTP status, or 0 when no HTTP answer came back."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def workload_path(kind: str, namespace: str, name: str) -> str:
    plural = _PLURALS.get(kind.lower())
    if plural is None:
        raise ValueError(f"unsupported workload kind {kind!r}")
    return f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"


class KubeClient:
    """Use as ``async with KubeClient(config) as kube: await kube.get(path)``."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout_s: float = 10.0,
        max_response_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        self._ssl = config.ssl_context()
        self._token: str | None = config.token
        self._token_read_at = float("-inf")

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            # No timer of aiohttp's own: the lenient timeout around each request bounds it (a second
            # timer would fire at the same instant when the guard runs late, and drop the answer).
            timeout=NO_AIOHTTP_TIMEOUT,
            # A heal makes a handful of sequential calls; a small pool keeps us polite to the apiserver.
            connector=aiohttp.TCPConnector(limit=4, ssl=self._ssl if self._ssl is not None else True),
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- generic verbs -------------------------------------------------------------------------

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def patch(
        self, path: str, body: dict[str, Any], content_type: str = STRATEGIC_MERGE
    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self.request("DELETE", path)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("KubeClient must be used as 'async with KubeClient(...)'")
        headers = {"Accept": "application/json"}
        token = self._current_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type
        what = f"{method} {path}"
        try:
            # The whole exchange (a server that trickles bytes too), not counting the guard's own
            # lateness: an answer that arrived while the guard could not run is read, not a timeout
            # (a rollout restart reported failed would be retried: a second restart).
            async with (
                lenient_timeout(self.timeout_s),
                self._session.request(
                    method,
                    self.config.server + path,
                    data=data,
                    headers=headers,
                    params=params,
                    allow_redirects=False,
                ) as resp,
            ):
                raw = await self._read_capped(resp, what)
                status, http_reason = resp.status, resp.reason or ""
        except TimeoutError:
            raise KubeError(0, "Timeout", f"{what}: no answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise KubeError(
                0, "ConnectionError", f"{what}: {_short(str(exc) or type(exc).__name__)}"
            ) from None
        if status >= 300:
            raise _error_from_status(status, http_reason, raw, what)
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KubeError(status, "InvalidResponse", f"{what}: answer is not JSON") from None
        return doc if isinstance(doc, dict) else {"items": doc}

    async def _read_capped(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise KubeError(
                    0, "ResponseTooLarge", f"{what}: answer exceeds {self.max_response_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _current_token(self) -> str | None:
        if self.config.token_file is None:
            return self._token
        now = time.monotonic()
        if now - self._token_read_at >= TOKEN_REREAD_S:
            try:
                self._token = read_small_file(self.config.token_file).decode().strip()
            except OSError:
                if self._token is None:
                    raise KubeError(0, "Unauthorized", "service account token is unreadable") from None
                # Keep the last good token: a rotation in progress must not fail a heal.
            self._token_read_at = now
        return self._token

    # -- workload helpers ----------------------------------------------------------------------

    async def rollout_restart(
        self,
        kind: str,
        namespace: str,
        name: str,
        restarted_at: str,
        extra_annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """What ``kubectl rollout restart`` does: touch the pod template's restartedAt annotation."""
        annotations = {RESTARTED_AT_ANNOTATION: restarted_at, **(extra_annotations or {})}
        body = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
        return await self.patch(workload_path(kind, namespace, name), body, STRATEGIC_MERGE)

    async def get_scale(self, kind: str, namespace: str, name: str) -> int:
        scale = await self.get(workload_path(kind, namespace, name) + "/scale")
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int):
            raise KubeError(200, "InvalidResponse", f"{kind} {namespace}/{name}: scale has no replica count")
        return replicas

    async def scale(
        self, kind: str, namespace: str, name: str, replicas: int, current: int | None = None
    ) -> int:
        """Set the replica count through the /scale subresource; returns the previous count.

        ``current`` lets a caller that already read the scale (to compute a relative step) skip
        the second GET.
        """
        if current is None:
            current = await self.get_scale(kind, namespace, name)
        body = {"spec": {"replicas": replicas}}
        await self.patch(workload_path(kind, namespace, name) + "/scale", body, MERGE_PATCH)
        return current

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        doc = await self.get(
            f"/api/v1/namespaces/{quote(namespace, safe='')}/pods", params={"labelSelector": label_selector}
        )
        items = doc.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def delete_pod(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.delete(
            f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}"
        )


def _error_from_status(status: int, http_reason: str, raw: bytes, what: str) -> KubeError:
    # The apiserver answers errors with a v1 Status object; proxies in between may not.
    reason, message = http_reason or "Error", ""
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict) and doc.get("kind") == "Status":
            reason = str(doc.get("reason") or reason)
            message = str(doc.get("message") or "")
    except ValueError:
        pass
    return KubeError(status, reason, _short(message) or what)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[: _MAX_MESSAGE_CHARS - 3] + "..."
