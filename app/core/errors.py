"""Domain errors and the one error envelope every non-2xx response uses.

Services raise these (never ``HTTPException``); ``install_error_handlers`` turns them, and every
other failure, into ``{"error": {"type", "message", "details", "timestamp"}}``. A 500 never carries
exception text: the details go to the log with a request id the client can quote.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

log = logging.getLogger("pipeline_guard.errors")


class PipelineGuardError(Exception):
    """Base of every error the guard raises on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(
        self, message: str, *, details: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


class ConfigurationError(PipelineGuardError):
    status_code = 500
    error_type = "configuration_error"


class BadRequest(PipelineGuardError):
    status_code = 400
    error_type = "bad_request"


class ValidationFailed(PipelineGuardError):
    status_code = 422
    error_type = "validation_error"


class Unauthorized(PipelineGuardError):
    status_code = 401
    error_type = "unauthorized"

    def __init__(self, message: str = "authentication required", **kwargs: Any):
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(PipelineGuardError):
    status_code = 403
    error_type = "forbidden"


class NotFound(PipelineGuardError):
    status_code = 404
    error_type = "not_found"


class Conflict(PipelineGuardError):
    status_code = 409
    error_type = "conflict"


class PayloadTooLarge(PipelineGuardError):
    status_code = 413
    error_type = "payload_too_large"


class RateLimited(PipelineGuardError):
    status_code = 429
    error_type = "rate_limited"


class ServiceUnavailable(PipelineGuardError):
    status_code = 503
    error_type = "service_unavailable"


# --- the envelope -----------------------------------------------------------------------------


class ErrorBody(BaseModel):
    type: str = Field(examples=["not_found"])
    message: str = Field(examples=["component 'etl' not found"])
    details: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def envelope(error_type: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "type": error_type,
            "message": message,
            "details": details or {},
            "timestamp": datetime.now(UTC).isoformat(),
        }
    }


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of the envelope for the given status codes."""
    descriptions = {
        400: "Bad request",
        401: "Not authenticated",
        403: "Not permitted",
        404: "Not found",
        409: "Conflict",
        413: "Payload too large",
        422: "Validation error",
        429: "Rate limited",
        500: "Internal error",
        503: "Service unavailable",
    }
    return {code: {"model": ErrorEnvelope, "description": descriptions.get(code, "Error")} for code in codes}


COMMON_ERROR_RESPONSES = error_responses(401, 403, 422, 429, 500, 503)
