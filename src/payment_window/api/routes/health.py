"""Liveness (no I/O: the benchmark baseline) and readiness (store and index answer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import structlog
from fastapi import APIRouter, Response

from payment_window import __version__
from payment_window.api.deps import ContainerDep
from payment_window.api.errors import ApiError
from payment_window.api.schemas import HealthOut, error_responses

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])

READY_TIMEOUT_SECONDS = 3.0
_OK = json.dumps({"status": "ok", "version": __version__}, separators=(",", ":")).encode()


@router.get("/healthz", response_model=None, responses={200: {"model": HealthOut}})
async def healthz() -> Response:
    """The process is up, and which version it runs."""
    return Response(_OK, media_type="application/json")


@router.get(
    "/readyz", response_model=None, responses={200: {"model": HealthOut}, **error_responses(503)}
)
async def readyz(container: ContainerDep) -> Response:
    """The store and the window index each answer a ping."""
    checks = {"store": container.store_probe.ping(), "index": container.index.ping()}
    results = await asyncio.gather(*(_probe(name, c) for name, c in checks.items()))
    failed = [name for name, ok in zip(checks, results, strict=True) if not ok]
    if failed:
        raise ApiError(
            503,
            "not_ready",
            f"{' and '.join(failed)} unreachable",
            headers={"Retry-After": "5"},
            extra={
                "checks": {
                    name: ("ok" if ok else "unreachable")
                    for name, ok in zip(checks, results, strict=True)
                }
            },
        )
    return Response(_OK, media_type="application/json")


async def _probe(name: str, check: Awaitable[None]) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await check
    except Exception as error:
        # One line, no traceback: a down store fails every probe, and rendering tracebacks
        # (the console renderer's take seconds) would slow the very answer that says so.
        log.warning("readiness_check_failed", check=name, error=repr(error))
        return False
    return True
