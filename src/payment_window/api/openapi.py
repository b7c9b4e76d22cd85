"""`/openapi.json` as the app really answers: every error in the one error shape.

FastAPI declares its own `HTTPValidationError` body for a 422 on every route with parameters;
this app answers validation errors as `{"error": {"code": "invalid_request", ...}}`
(api/errors.py), so those declarations are replaced by `ErrorOut`. Store and dependency
failures answer 503 with `Retry-After` on every route that reaches them (everything but
`/healthz`), so each route declares it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from payment_window.api.schemas import RETRY_AFTER

FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
ERROR_REF = "#/components/schemas/ErrorOut"
NO_STORE_ROUTES = frozenset({"/healthz"})


def _error_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}},
    }


def describe_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite `spec` in place (and return it) as described in the module docstring."""
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            validation = responses.get("422")
            if validation is not None and "HTTPValidationError" in str(validation):
                responses["422"] = _error_answer("A parameter is refused (`invalid_request`).")
            if path not in NO_STORE_ROUTES and "503" not in responses:
                answer = _error_answer("The store or another dependency is unavailable.")
                answer["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
                responses["503"] = answer
    schemas: dict[str, Any] = spec.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the rewritten description (built once, on the first request for it)."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
