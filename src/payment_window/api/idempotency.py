"""`Idempotency-Key` on the POSTs that change things, as Stripe does it.

The same key (per token role and subject: an admin's answer is never replayed to a buyer token
with the same `sub`) with the same request answers the first answer again, status and body byte
for byte, for 24 hours; with another request it is 422 `idempotency_key_reused`; while the
first is still being worked on, 409 `idempotency_key_in_use`. Only completed answers (2xx, 4xx)
are kept: after a 5xx the client may retry with the same key at once. When the store failed
under the request, the claim is let go in the background as soon as the store answers again
(the request does not wait for it); only a process that died mid-request leaves its claim to
`ABANDONED_AFTER`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated

import structlog
from fastapi import Header, Request
from fastapi.responses import Response
from pydantic import BaseModel

from payment_window.adapters.idempotency import SavedAnswer, SqlIdempotencyKeys
from payment_window.api.errors import (
    ApiError,
    api_error_response,
    domain_error_response,
)
from payment_window.domain.access import Actor
from payment_window.domain.errors import DomainError

log = structlog.get_logger(__name__)

KEPT_FOR = timedelta(hours=24)
# A claim unanswered for this long belonged to a process that died: opening a window is one
# Stripe call of at most 30 s per attempt, so no live request is ever this slow.
ABANDONED_AFTER = timedelta(minutes=5)
MAX_KEY_LENGTH = 255
# Forgotten keys are deleted now and then by requests themselves, so no job is needed for it.
PURGE_ONE_IN = 200
REPLAYED_HEADER = "Idempotent-Replayed"
# Per-request framing the replay recomputes; everything else the first answer had is kept.
_NOT_KEPT = frozenset({"content-length"})
# Claims whose release failed (the store was away), being released in the background.
_RELEASING: set[asyncio.Task[None]] = set()
RELEASE_BACKOFF_CAP_SECONDS = 2.0

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry safely: the same key and body answer the first answer again for "
        "24 hours (at most 255 characters).",
    ),
]


def fingerprint(request: Request, body: BaseModel) -> str:
    """sha256 of the method, the path and the body in canonical JSON (key order, spacing)."""
    canonical = json.dumps(
        body.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(f"{request.method}\n{request.url.path}\n{canonical}".encode()).hexdigest()


async def idempotent(
    request: Request,
    actor: Actor,
    key: str | None,
    body: BaseModel,
    answer: Callable[[], Awaitable[Response]],
) -> Response:
    """`answer()`, or the answer it gave the first time this key came with this request."""
    if key is None:
        return await answer()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
        )
    container = request.app.state.container
    keys = container.idempotency_keys
    now = container.clock.now()
    request_fingerprint = fingerprint(request, body)
    scope = key_scope(actor)
    held = await keys.claim(
        scope,
        key,
        request_fingerprint,
        now,
        forget_before=now - KEPT_FOR,
        abandon_before=now - ABANDONED_AFTER,
    )
    if held is not None:
        return _replay_or_refuse(held.fingerprint == request_fingerprint, held.answer)
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        await keys.purge(now - KEPT_FOR)
    response: Response | None = None
    try:
        try:
            response = await answer()
        except DomainError as refusal:
            response = domain_error_response(refusal)
        except ApiError as refusal:
            response = api_error_response(refusal)
    finally:
        if response is None or response.status_code >= 500:
            await _release(keys, scope, key, now)
    if response.status_code < 500:
        await _keep(keys, scope, key, response)
    return response


def key_scope(actor: Actor) -> str:
    """Keys belong to a role and a subject together (`admin:ops-1` is not `buyer:ops-1`)."""
    return actor.label


async def _release(keys: SqlIdempotencyKeys, scope: str, key: str, claimed_at: datetime) -> None:
    """Let the claim go so the client's retry is served; if the store is away (why the
    request failed, often), keep trying in the background and answer now."""
    try:
        async with asyncio.timeout(RELEASE_BACKOFF_CAP_SECONDS):
            await keys.release(scope, key, claimed_at)
    except Exception:
        log.warning("idempotency_release_deferred", exc_info=True)
        task = asyncio.get_running_loop().create_task(
            _release_later(keys, scope, key, claimed_at), name="idempotency-key-release"
        )
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)


async def _release_later(
    keys: SqlIdempotencyKeys, scope: str, key: str, claimed_at: datetime
) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + ABANDONED_AFTER.total_seconds()
    delay = 0.25
    while loop.time() < give_up:
        await asyncio.sleep(delay)
        try:
            await keys.release(scope, key, claimed_at)
        except Exception:
            delay = min(RELEASE_BACKOFF_CAP_SECONDS, delay * 2)
            continue
        log.info("idempotency_key_released")
        return


def _replay_or_refuse(same_request: bool, answer: SavedAnswer | None) -> Response:
    if not same_request:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )
    if answer is None:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being worked on; retry shortly",
            headers={"Retry-After": "1"},
        )
    return Response(
        answer.body,
        status_code=answer.status_code,
        headers={**answer.headers, REPLAYED_HEADER: "true"},
    )


async def _keep(keys: SqlIdempotencyKeys, subject: str, key: str, response: Response) -> None:
    headers = {name: value for name, value in response.headers.items() if name not in _NOT_KEPT}
    try:
        await keys.answer(
            subject, key, SavedAnswer(response.status_code, bytes(response.body), headers)
        )
    except Exception:
        # The change is committed, so the caller hears of it; a retry finds the key unanswered
        # (409 until ABANDONED_AFTER) rather than making the change twice.
        log.warning("idempotency_answer_not_kept", exc_info=True)
