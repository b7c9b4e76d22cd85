"""What the routes answer: the status body of the contract, as plain (fast) JSON."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from payment_window.service import WindowStatus, status_body


def etag(version: int) -> str:
    return f'"{version}"'


def status_response(
    status: WindowStatus, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    # No pydantic on the way out: this is the hot read path the benchmark compares to /healthz.
    return JSONResponse(
        status_body(status),
        status_code=status_code,
        headers={"ETag": etag(status.version), "Cache-Control": "no-store", **(headers or {})},
    )
