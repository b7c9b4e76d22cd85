"""`/docs`: Swagger UI served from the package (swagger-ui-dist, vendored), never from a CDN.

The page loads nothing but this origin's files, so its policy allows only 'self'. `PW_API_DOCS
=false` leaves this router (and `/openapi.json`) out of the app.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from payment_window.api.routes.page import templates

router = APIRouter(include_in_schema=False)

DOCS_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'self'; frame-ancestors 'self'",
    "Referrer-Policy": "no-referrer",
}


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "docs.html", {}, headers=DOCS_HEADERS)
