"""The checkout page: one template for buyer, maker and admin; the token stays in the fragment."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from payment_window.api.deps import SessionId

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=WEB_DIR / "templates")

router = APIRouter(tags=["page"])

# The page reads its token from the URL fragment: no Referer may carry the URL anywhere, no
# script but ours may run, and nothing but this origin may be called.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@router.get("/checkout/{sessionId}", response_class=HTMLResponse, include_in_schema=False)
async def checkout_page(request: Request, session_id: SessionId) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "checkout.html", {"session_id": session_id}, headers=PAGE_HEADERS
    )
