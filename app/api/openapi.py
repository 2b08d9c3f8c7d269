"""The OpenAPI document: FastAPI's, plus the error responses every operation can really return.

Some failures happen before a route runs — a body that is not JSON or a NUL in the URL (400), a body
over the size cap (413), the rate limiter (429) — so they apply to every operation, not just to the
routes that thought of declaring them. Adding them here, once, keeps the document honest as routes
are added (the schemathesis test checks that every status code the API returns is documented).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}
_BODY_ERRORS = {
    "400": "Bad request (the body could not be parsed, or NUL in the URL)",
    "413": "Payload too large",
}
_ANY_ERRORS = {"400": "Bad request (NUL characters in the path or query string)", "429": "Rate limited"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ENVELOPE_REF}}}


def add_common_error_responses(schema: dict[str, Any]) -> dict[str, Any]:
    uses_envelope = False
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            extra = dict(_ANY_ERRORS)
            if "requestBody" in operation:
                extra.update(_BODY_ERRORS)
            for code, description in extra.items():
                if code not in responses:
                    responses[code] = _error_response(description)
                    uses_envelope = True
    if uses_envelope:
        from app.core.errors import ErrorEnvelope

        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        if "ErrorEnvelope" not in schemas:
            # Pydantic's JSON schema for the envelope, with nested definitions hoisted.
            envelope_schema = ErrorEnvelope.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in envelope_schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas["ErrorEnvelope"] = envelope_schema
    return schema


# The edge middleware (app/api/edge.py) refuses NUL anywhere in the path or query string (400): every
# free-form string parameter says so, so clients (and the fuzz test) know such a value is not valid input.
_NO_NUL = "^[^\\x00]*$"


def forbid_nul_in_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") in ("path", "query"):
                    _no_nul(parameter.get("schema", {}))
    return schema


def _no_nul(schema: dict[str, Any]) -> None:
    for variant in schema.get("anyOf", []):
        _no_nul(variant)
    if schema.get("type") == "array":
        _no_nul(schema.get("items", {}))
    if schema.get("type") == "string" and not ({"pattern", "format", "enum", "const"} & set(schema)):
        schema["pattern"] = _NO_NUL


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                openapi_version=app.openapi_version,
                tags=app.openapi_tags,
                servers=app.servers,
            )
            app.openapi_schema = forbid_nul_in_parameters(add_common_error_responses(schema))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
