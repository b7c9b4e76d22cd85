"""The app factory: `create_app(settings)` for a server, `create_app(container=...)` for tests.

Nothing connects at import or in the factory: the lifespan bootstraps the container (unless one
was given, whose owner then closes it).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from payment_window import __version__
from payment_window.api import sse
from payment_window.api.auth import TokenVerifier
from payment_window.api.background import background_loops
from payment_window.api.cors import CorsMiddleware
from payment_window.api.errors import install_error_handlers
from payment_window.api.middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from payment_window.api.openapi import install_openapi
from payment_window.api.routes import (
    checkout,
    docs,
    events,
    health,
    override,
    page,
    policy,
    webhooks,
)
from payment_window.api.routes import operations as operations_routes
from payment_window.api.status_read import StatusReadShortcut
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings

TITLE = "payment-window"


def create_app(
    settings: Settings | None = None,
    container: Container | None = None,
    *,
    background: bool = False,
) -> FastAPI:
    """A FastAPI app over `container`, or over one bootstrapped from `settings` at start-up.

    `background=True` is `payment-window serve`: it also runs the loops `loops_for("serve")`
    names (the expiry worker and relay on the embedded default, or as `PW_SERVE_LOOPS` asks).
    """
    if settings is None:
        settings = container.settings if container is not None else Settings()
    resolved = settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            built = container
            if built is None:
                built = await bootstrap(resolved)
                stack.push_async_callback(built.close)
                app.state.container = built
            await built.sync_clock()  # the one clock that stamps, before the first request
            await stack.enter_async_context(built.repairing())
            if background:
                await stack.enter_async_context(background_loops(built))
            _freeze_startup_objects()
            yield

    app = FastAPI(
        title=TITLE,
        version=__version__,
        description="Payment windows on Stripe Checkout sessions for an auction marketplace.",
        # Swagger UI comes from the package (routes/docs.py), not FastAPI's CDN page; no ReDoc.
        openapi_url="/openapi.json" if settings.api_docs else None,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.sse_heartbeat_seconds = sse.HEARTBEAT_SECONDS  # tests shorten it
    app.state.stream_slots = sse.StreamSlots(settings.sse_max_streams_per_subject)
    app.state.draining = asyncio.Event()  # set by `serve` on SIGTERM: streams end
    if container is not None:
        app.state.container = container
    install_error_handlers(app)
    install_openapi(app)
    # Outermost last: headers go on every answer, the 500 included; limits act before routing.
    app.add_middleware(StatusReadShortcut)
    if settings.cors_origins:
        app.add_middleware(CorsMiddleware, origins=settings.cors_origins)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    for module in (health, checkout, events, override, policy, webhooks, page):
        app.include_router(module.router)
    if settings.api_docs:
        app.include_router(docs.router)
    app.include_router(operations_routes.router)
    # The element's modules are links into clients/web/src (one source; the wheel holds copies).
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR, follow_symlink=True), name="static")
    return app


def _freeze_startup_objects() -> None:
    """Keep what start-up built (modules, routes, the SDKs' classes) out of the collector.

    A full collection walks every tracked object: over this process's start-up heap it paused
    the event loop for 130-145 ms every few seconds under load, every request in flight waiting
    (docs/performance.md). Frozen objects are never walked again; what requests allocate is
    collected as before.
    """
    gc.collect()
    gc.freeze()
