"""The one place errors become HTTP answers: `{"error": {"code": ..., "message": ...}}`.

Domain errors keep their `code`; the table below gives each its status. Request validation is
422 naming the fields, except a body that is not JSON at all, which is 400 `malformed_json`.
Nothing here ever puts a stack trace in a response.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from payment_window.domain.buyers import InvalidPeriod
from payment_window.domain.errors import (
    AmountTooSmall,
    AuctionAlreadyPaid,
    CheckoutAlreadyAttached,
    CheckoutNotFound,
    CheckoutNotOpen,
    CheckoutRecoveryEnabled,
    CheckoutRefused,
    DomainError,
    ExtensionExceedsPolicy,
    InvalidTransition,
    InvalidWebhook,
    InvalidWindow,
    OverrideNotAllowed,
    PaymentProviderUnavailable,
    PreconditionFailed,
    SessionNotFound,
    StoreUnavailable,
    VersionConflict,
    WindowAlreadyOpen,
    WindowElapsed,
    WindowNotOpen,
    WindowOutlivesCheckout,
    WindowUnreadable,
)

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5

STATUS_BY_ERROR: Mapping[type[DomainError], int] = {
    SessionNotFound: 404,
    OverrideNotAllowed: 403,
    WindowNotOpen: 409,
    WindowElapsed: 409,
    WindowAlreadyOpen: 409,
    AuctionAlreadyPaid: 409,
    VersionConflict: 409,
    InvalidTransition: 409,
    CheckoutNotOpen: 409,
    CheckoutAlreadyAttached: 409,
    WindowOutlivesCheckout: 422,
    CheckoutRecoveryEnabled: 422,
    CheckoutNotFound: 422,
    PreconditionFailed: 412,
    ExtensionExceedsPolicy: 422,
    InvalidWindow: 422,
    InvalidPeriod: 422,
    AmountTooSmall: 422,
    CheckoutRefused: 422,
    InvalidWebhook: 400,
    PaymentProviderUnavailable: 503,
    StoreUnavailable: 503,
    # Another version (mid rolling deploy) can read it: a retry may well succeed.
    WindowUnreadable: 503,
}
# A domain refusal the table does not name is still the caller's problem, not a crash.
FALLBACK_DOMAIN_STATUS = 400

CODE_BY_HTTP_STATUS: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class ApiError(Exception):
    """An HTTP-level refusal raised by the API layer itself (bad header, not ready, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class Unauthorized(ApiError):
    """No usable bearer token: 401 with a `WWW-Authenticate: Bearer` challenge."""

    def __init__(self, message: str, *, invalid_token: bool = True) -> None:
        challenge = 'Bearer realm="payment-window"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def status_for(error: DomainError) -> int:
    for cls in type(error).__mro__:
        status = STATUS_BY_ERROR.get(cls)
        if status is not None:
            return status
    return FALLBACK_DOMAIN_STATUS


def domain_error_response(exc: DomainError) -> JSONResponse:
    """A domain refusal as its HTTP answer."""
    status = status_for(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    code = exc.code
    if isinstance(exc, ExtensionExceedsPolicy):
        extra["minutesStillAllowed"] = exc.still_allowed
    if isinstance(exc, AmountTooSmall):
        extra["minimumAmount"] = exc.minimum
    if isinstance(exc, CheckoutRefused) and exc.stripe_code:
        code = exc.stripe_code  # Stripe's own code tells the caller what to change
    if isinstance(exc, WindowOutlivesCheckout):
        extra["latestEnd"] = exc.latest_end
    if isinstance(exc, WindowAlreadyOpen | AuctionAlreadyPaid | CheckoutAlreadyAttached) and (
        exc.session_id
    ):
        extra["sessionId"] = exc.session_id
    if status == 503:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    if status >= 500:
        log.warning("request_failed", code=code, error=str(exc))
    return error_response(status, code, str(exc), headers=headers, **extra)


def api_error_response(exc: ApiError) -> JSONResponse:
    """An API-layer refusal as its HTTP answer."""
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


def _field_name(loc: tuple[int | str, ...]) -> str:
    where, *rest = loc if loc else ("request",)
    if not rest:
        return str(where)
    name = ".".join(str(part) for part in rest)
    return f"{name} header" if where == "header" else name


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    fields = [
        {"field": _field_name(tuple(problem.get("loc", ()))), "message": str(problem.get("msg"))}
        for problem in problems
    ]
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5]) or "invalid request"
    return error_response(422, "invalid_request", message, fields=fields)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return error_response(exc.status_code, code, message, headers=exc.headers)


def internal_error_response(request_id: str) -> JSONResponse:
    """What a client sees of a bug: a generic message and the id to quote, nothing else."""
    return error_response(
        500,
        "internal_error",
        f"something went wrong on our side; quote request id {request_id}",
    )


def store_unavailable_response() -> JSONResponse:
    """The store is down, failing over or frozen: retry shortly (`/readyz` says when)."""
    return error_response(
        503,
        StoreUnavailable.code,
        "the payment store is not answering; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping above; unhandled exceptions are caught by the request middleware."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
