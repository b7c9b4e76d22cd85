"""Idempotency-Key on the two POSTs that change things: a retry is answered, not repeated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from sqlalchemy import update

from payment_window.adapters.tables import idempotency_keys
from payment_window.config import Settings

CREATE = "/v1/checkout/sessions"


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


def _body(auction_id: str = "auc-1", **changes: Any) -> dict[str, Any]:
    return {
        "auctionId": auction_id,
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "amount": 12_500,
        "currency": "usd",
        **changes,
    }


async def _open(api: Api, key: str | None, body: dict[str, Any], sub: str = "shop") -> Any:
    headers = api.auth("service", sub)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await api.client.post("/payments/checkout", json=body, headers=headers)


async def _extend(api: Api, session_id: str, key: str, minutes: int = 30) -> Any:
    return await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "extend", "minutes": minutes},
        headers={**api.admin, "Idempotency-Key": key},
    )


async def test_a_retried_open_answers_the_first_answer_and_opens_one_session(
    api: Api, stripe: RunningStripe
) -> None:
    key = str(uuid.uuid4())
    first = await _open(api, key, _body())
    assert first.status_code == 201, first.text

    # The same request again, its keys in another order: still the same request.
    again = await _open(api, key, dict(reversed(list(_body().items()))))

    assert again.status_code == 201
    assert again.content == first.content
    assert again.json()["sessionId"] == first.json()["sessionId"]
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert stripe.calls(CREATE, "POST") == 1
    assert (await api.counts())["payment_sessions"] == 1


async def test_a_key_reused_with_another_body_is_refused_and_changes_nothing(
    api: Api, stripe: RunningStripe
) -> None:
    key = str(uuid.uuid4())
    assert (await _open(api, key, _body("auc-a"))).status_code == 201
    before = await api.counts()

    reused = await _open(api, key, _body("auc-b"))

    assert reused.status_code == 422, reused.text
    assert assert_error_shape(reused)["code"] == "idempotency_key_reused"
    assert await api.counts() == before
    assert stripe.calls(CREATE, "POST") == 1


async def test_keys_belong_to_their_subject(api: Api) -> None:
    key = str(uuid.uuid4())
    assert (await _open(api, key, _body("auc-a"), sub="shop-1")).status_code == 201
    other = await _open(api, key, _body("auc-b"), sub="shop-2")
    assert other.status_code == 201, other.text


async def test_keys_belong_to_a_role_and_subject_together(api: Api) -> None:
    key = str(uuid.uuid4())
    admin = {**api.auth("admin", "same-sub"), "Idempotency-Key": key}
    first = await api.client.post("/payments/checkout", json=_body("auc-s"), headers=admin)
    assert first.status_code == 201, first.text

    # A buyer token that happens to carry the same `sub`: its own refusal, never the admin's
    # answer (which names the window and its checkout link).
    buyer = {**api.auth("buyer", "same-sub"), "Idempotency-Key": key}
    replayed = await api.client.post("/payments/checkout", json=_body("auc-s"), headers=buyer)
    assert replayed.status_code == 403, replayed.text
    assert "idempotent-replayed" not in replayed.headers
    service = {**api.auth("service", "same-sub"), "Idempotency-Key": key}
    other = await api.client.post("/payments/checkout", json=_body("auc-t"), headers=service)
    assert other.status_code == 201, other.text


async def test_a_refusal_is_replayed_too(api: Api) -> None:
    assert (await _open(api, None, _body("auc-r"))).status_code == 201
    key = str(uuid.uuid4())
    first = await _open(api, key, _body("auc-r"))
    assert first.status_code == 409

    again = await _open(api, key, _body("auc-r"))

    assert again.status_code == 409 and again.content == first.content


async def test_an_extension_retried_with_its_key_extends_once(api: Api) -> None:
    opened = await api.open_window(windowMinutes=60)
    key = str(uuid.uuid4())

    first = await _extend(api, opened["sessionId"], key)
    again = await _extend(api, opened["sessionId"], key)

    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.content == first.content
    status = await api.client.get(
        f"/payments/checkout/{opened['sessionId']}/status", headers=api.admin
    )
    assert status.json()["version"] == 2
    assert status.json()["expiresAt"] == first.json()["expiresAt"]
    expected = datetime.fromisoformat(opened["expiresAt"]) + timedelta(minutes=30)
    assert datetime.fromisoformat(status.json()["expiresAt"]) == expected


async def test_a_request_still_in_flight_makes_its_retry_wait(
    api: Api, stripe: RunningStripe
) -> None:
    key = str(uuid.uuid4())
    stripe.delay_next(1.0, path=CREATE)

    async def retry_meanwhile() -> Any:
        # Once the first request is at Stripe, its key is taken.
        for _ in range(500):  # up to 5 s
            if stripe.calls(CREATE, "POST"):
                break
            await asyncio.sleep(0.01)
        return await _open(api, key, _body())

    first, retry = await asyncio.gather(_open(api, key, _body()), retry_meanwhile())

    assert first.status_code == 201, first.text
    assert retry.status_code == 409, retry.text
    assert assert_error_shape(retry)["code"] == "idempotency_key_in_use"
    assert stripe.calls(CREATE, "POST") == 1


async def test_a_server_error_is_not_kept_so_the_retry_runs(
    api: Api, stripe: RunningStripe
) -> None:
    key = str(uuid.uuid4())
    stripe.fail_next(1, 500, path=CREATE)

    failed = await _open(api, key, _body())
    retried = await _open(api, key, _body())

    assert failed.status_code == 503, failed.text
    assert retried.status_code == 201, retried.text


async def test_a_key_is_forgotten_after_24_hours(api: Api) -> None:
    key = str(uuid.uuid4())
    assert (await _open(api, key, _body("auc-old"))).status_code == 201
    async with api.container.engine.begin() as connection:
        await connection.execute(
            update(idempotency_keys).values(created_at=datetime.now(UTC) - timedelta(hours=25))
        )

    fresh = await _open(api, key, _body("auc-new"))

    assert fresh.status_code == 201, fresh.text


@pytest.mark.parametrize("key", ["k" * 256, ""], ids=["256 characters", "empty"])
async def test_an_unusable_key_is_a_400(api: Api, key: str) -> None:
    response = await _open(api, key, _body())
    assert response.status_code == 400, response.text
    assert assert_error_shape(response)["code"] == "invalid_idempotency_key"
    assert (await api.counts())["payment_sessions"] == 0


async def test_a_255_character_key_is_fine(api: Api) -> None:
    assert (await _open(api, "k" * 255, _body())).status_code == 201
