"""The checkout page: one template for buyer, maker and admin; the token stays in the fragment."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
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
    context = {
        "session_id": session_id,
        "support_contact": request.app.state.settings.support_contact,
    }
    return templates.TemplateResponse(request, "checkout.html", context, headers=PAGE_HEADERS)


@router.get("/", include_in_schema=False)
async def index() -> RedirectResponse:
    """Nothing lives at `/`: the operations page is where a person starts."""
    return RedirectResponse("/ops", status_code=307)


# The window with its closing edge: the page icon, small enough to answer inline.
FAVICON_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    b'<rect x="3" y="5" width="26" height="22" rx="4" fill="#1a56db"/>'
    b'<circle cx="16" cy="16" r="7" fill="none" stroke="#fff" stroke-width="2.5"/>'
    b'<path d="M16 11v5l3 2" fill="none" stroke="#fff" stroke-width="2.5" stroke-linecap="round"/>'
    b"</svg>"
)
ICON_HEADERS = {"Cache-Control": "public, max-age=86400"}


@router.get("/favicon.svg", include_in_schema=False)
async def favicon_svg() -> Response:
    return Response(FAVICON_SVG, media_type="image/svg+xml", headers=ICON_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon_ico() -> RedirectResponse:
    """Browsers ask for /favicon.ico on pages that name no icon (the API docs, JSON)."""
    return RedirectResponse("/favicon.svg", status_code=308, headers=ICON_HEADERS)
