"""POST /api/v1/integrations/alertmanager — authenticated by its own bearer token, not a user login.

Alertmanager side: ``http_config: {authorization: {credentials: <PIPELINE_ALERTMANAGER_TOKEN>}}``.
Without a configured token the receiver refuses everything (401).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from pydantic import ValidationError

from app.api.deps import EventsDep, SessionDep, SettingsDep
from app.audit.middleware import audit_actor
from app.config.settings import Settings
from app.core.errors import Unauthorized, ValidationFailed, error_responses
from app.integrations.alertmanager import AlertmanagerPayload, AlertmanagerReceiver, ReceiverResult

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])


def _check_token(request: Request, settings: Settings) -> None:
    configured = settings.security.alertmanager_token
    expected = configured.get_secret_value() if configured else ""
    if not expected:
        raise Unauthorized("the Alertmanager receiver is disabled: set PIPELINE_ALERTMANAGER_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("invalid Alertmanager token")
    audit_actor(request, "alertmanager")


@router.post("/alertmanager", response_model=ReceiverResult, responses=error_responses(401, 413, 422))
async def alertmanager_webhook(
    request: Request, session: SessionDep, settings: SettingsDep, events: EventsDep
) -> ReceiverResult:
    """Alertmanager webhook payload (version 4): firing alerts open or refresh guard alerts, resolved
    ones resolve."""
    _check_token(request, settings)
    try:
        payload = AlertmanagerPayload.model_validate_json(await request.body())
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()[:20]
        ]
        raise ValidationFailed(
            "not an Alertmanager webhook payload (version 4)", details={"fields": fields}
        ) from None
    return await AlertmanagerReceiver(session, settings, events).receive(payload)
