"""POST /payments/checkout and GET .../status over PostgreSQL and the local Stripe server."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest
from api_harness import JWT_SECRET, Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from seeding import count_rows

from payment_window.config import Settings

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STATUS_KEYS = {
    "sessionId",
    "auctionId",
    "status",
    "expiresAt",
    "remainingTime",
    "serverTime",
    "version",
    "reason",
    "checkoutUrl",
    "amount",
    "currency",
    "makerId",
}


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


def _valid_body(**changes: Any) -> dict[str, Any]:
    body = {
        "auctionId": "auc-1",
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "amount": 12_500,
        "currency": "usd",
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not ...}


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "ops", "role": "admin", "iat": now, "exp": now + 600}
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not ...}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _in(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


async def test_created_window_round_trips_through_status(api: Api) -> None:
    response = await api.client.post(
        "/payments/checkout", json=_valid_body(windowMinutes=60), headers=api.auth("service")
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == STATUS_KEYS
    assert response.headers["location"] == f"/payments/checkout/{created['sessionId']}/status"
    assert created["status"] == "open" and created["version"] == 1 and created["reason"] is None
    assert created["checkoutUrl"].startswith("http")
    assert ISO_Z.match(created["expiresAt"]) and ISO_Z.match(created["serverTime"])
    assert isinstance(created["remainingTime"], int) and 3590 <= created["remainingTime"] <= 3600

    status = await api.client.get(
        response.headers["location"], headers=api.auth("buyer", "buyer-1")
    )
    assert status.status_code == 200, status.text
    body = status.json()
    assert set(body) == STATUS_KEYS
    assert {
        k: body[k] for k in ("sessionId", "auctionId", "expiresAt", "version", "checkoutUrl")
    } == {k: created[k] for k in ("sessionId", "auctionId", "expiresAt", "version", "checkoutUrl")}
    assert ISO_Z.match(body["expiresAt"]) and ISO_Z.match(body["serverTime"])
    assert isinstance(body["remainingTime"], int) and 0 <= body["remainingTime"] <= 3600
    assert status.headers["cache-control"] == "no-store"
    assert status.headers["etag"] == '"1"'


async def test_expires_at_with_an_offset_is_answered_in_utc(api: Api) -> None:
    plus_two = timezone(timedelta(hours=2))
    ends = (datetime.now(UTC) + timedelta(hours=5)).astimezone(plus_two).replace(microsecond=0)
    response = await api.client.post(
        "/payments/checkout", json=_valid_body(expiresAt=ends.isoformat()), headers=api.admin
    )
    assert response.status_code == 201, response.text
    assert ends.isoformat().endswith("+02:00")
    assert response.json()["expiresAt"] == ends.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.mark.parametrize(
    ("viewer", "expected"),
    [
        ({"role": "buyer", "sub": "buyer-1"}, 200),
        ({"role": "buyer", "sub": "buyer-2"}, 404),
        ({"role": "maker", "sub": "m", "maker_id": "maker-1"}, 200),
        ({"role": "maker", "sub": "m", "maker_id": "maker-2"}, 404),
        ({"role": "admin", "sub": "ops"}, 200),
        ({"role": "service", "sub": "marketplace"}, 404),
    ],
    ids=["own-buyer", "other-buyer", "own-maker", "other-maker", "admin", "service"],
)
async def test_a_window_is_visible_to_its_buyer_maker_and_admins_only(
    api: Api, viewer: dict[str, str], expected: int
) -> None:
    created = await api.open_window()
    response = await api.client.get(
        f"/payments/checkout/{created['sessionId']}/status", headers=api.auth(**viewer)
    )
    assert response.status_code == expected, response.text
    if expected == 404:
        assert assert_error_shape(response)["code"] == "session_not_found"
    else:
        assert response.json()["sessionId"] == created["sessionId"]


async def test_unknown_and_impossible_session_ids_are_not_found(api: Api) -> None:
    for session_id in ("pw_000000000000000000000000", "x" * 200, "%00"):
        response = await api.client.get(
            f"/payments/checkout/{session_id}/status", headers=api.admin
        )
        assert response.status_code == 404
        assert assert_error_shape(response)["code"] == "session_not_found"


async def test_status_needs_a_token(api: Api) -> None:
    created = await api.open_window()
    response = await api.client.get(f"/payments/checkout/{created['sessionId']}/status")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_error_shape(response)


_NOW = int(time.time())
BAD_REQUESTS: list[tuple[str, dict[str, Any], int, str]] = [
    # (case, request overrides: json / content / headers / token claims, status, error code)
    ("malformed JSON", {"content": b'{"auctionId": "a",'}, 400, "malformed_json"),
    ("not an object", {"json": [1, 2]}, 422, "invalid_request"),
    ("empty body", {"content": b""}, 422, "invalid_request"),
    ("unknown field", {"json": _valid_body(discount=5)}, 422, "invalid_request"),
    (
        "snake_case field",
        {"json": _valid_body(auctionId=..., auction_id="a")},
        422,
        "invalid_request",
    ),
    ("missing amount", {"json": _valid_body(amount=...)}, 422, "invalid_request"),
    ("amount 0", {"json": _valid_body(amount=0)}, 422, "invalid_request"),
    ("negative amount", {"json": _valid_body(amount=-100)}, 422, "invalid_request"),
    ("float amount", {"json": _valid_body(amount=125.0)}, 422, "invalid_request"),
    ("string amount", {"json": _valid_body(amount="12500")}, 422, "invalid_request"),
    ("boolean amount", {"json": _valid_body(amount=True)}, 422, "invalid_request"),
    ("huge amount", {"json": _valid_body(amount=10**12)}, 422, "invalid_request"),
    ("unknown currency", {"json": _valid_body(currency="xxx")}, 422, "invalid_window"),
    ("currency too long", {"json": _valid_body(currency="usdd")}, 422, "invalid_request"),
    ("empty auctionId", {"json": _valid_body(auctionId="")}, 422, "invalid_request"),
    ("auctionId of 129", {"json": _valid_body(auctionId="a" * 129)}, 422, "invalid_request"),
    ("numeric buyerId", {"json": _valid_body(buyerId=7)}, 422, "invalid_request"),
    ("NUL in makerId", {"json": _valid_body(makerId="m\u0000")}, 422, "invalid_request"),
    ("windowMinutes 0", {"json": _valid_body(windowMinutes=0)}, 422, "invalid_request"),
    (
        "windowMinutes over 7 days",
        {"json": _valid_body(windowMinutes=10081)},
        422,
        "invalid_request",
    ),
    ("string windowMinutes", {"json": _valid_body(windowMinutes="60")}, 422, "invalid_request"),
    (
        "expiresAt past",
        {"json": _valid_body(expiresAt=_in(-timedelta(minutes=1)))},
        422,
        "invalid_window",
    ),
    (
        "expiresAt over 7 days",
        {"json": _valid_body(expiresAt=_in(timedelta(days=7, hours=1)))},
        422,
        "invalid_window",
    ),
    (
        "naive expiresAt",
        {"json": _valid_body(expiresAt="2030-01-01T12:00:00")},
        422,
        "invalid_request",
    ),
    ("numeric expiresAt", {"json": _valid_body(expiresAt=_NOW + 3600)}, 422, "invalid_request"),
    (
        "expiresAt past year 9999 in UTC",
        {"json": _valid_body(expiresAt="9999-12-31T23:59:59-14:00")},
        422,
        "invalid_request",
    ),
    (
        "expiresAt before year 1 in UTC",
        {"json": _valid_body(expiresAt="0001-01-01T00:00:00+14:00")},
        422,
        "invalid_request",
    ),
    (
        "expiresAt at the end of time in UTC",
        {"json": _valid_body(expiresAt="9999-12-31T23:59:59Z")},
        422,
        "invalid_window",
    ),
    (
        "both windowMinutes and expiresAt",
        {"json": _valid_body(windowMinutes=60, expiresAt=_in(timedelta(hours=2)))},
        422,
        "invalid_window",
    ),
    ("no token", {"headers": {}}, 401, "unauthorized"),
    ("basic auth", {"headers": {"Authorization": "Basic b3BzOnB3"}}, 401, "unauthorized"),
    ("garbage token", {"headers": _bearer("not-a-jwt")}, 401, "unauthorized"),
    (
        "forged token",
        {"token": ("HS256", "another-secret-0123456789abcdef0123", _claims())},
        401,
        "unauthorized",
    ),
    (
        "expired token",
        {"token": ("HS256", JWT_SECRET, _claims(exp=_NOW - 60))},
        401,
        "unauthorized",
    ),
    ("alg none", {"token": ("none", None, _claims())}, 401, "unauthorized"),
    (
        "HS512 with the right secret",
        {"token": ("HS512", JWT_SECRET, _claims())},
        401,
        "unauthorized",
    ),
    ("token without exp", {"token": ("HS256", JWT_SECRET, _claims(exp=...))}, 401, "unauthorized"),
    (
        "token without role",
        {"token": ("HS256", JWT_SECRET, _claims(role=...))},
        401,
        "unauthorized",
    ),
    ("unknown role", {"token": ("HS256", JWT_SECRET, _claims(role="root"))}, 401, "unauthorized"),
    (
        "maker without makerId",
        {"token": ("HS256", JWT_SECRET, _claims(role="maker"))},
        401,
        "unauthorized",
    ),
    ("buyer creating", {"token": ("HS256", JWT_SECRET, _claims(role="buyer"))}, 403, "forbidden"),
    (
        "maker creating",
        {"token": ("HS256", JWT_SECRET, _claims(role="maker", makerId="maker-1"))},
        403,
        "forbidden",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
async def test_bad_requests_get_a_clear_4xx_and_change_nothing(
    api: Api, stripe: RunningStripe, overrides: dict[str, Any], status: int, code: str
) -> None:
    before = await api.counts()
    creations = stripe.calls("/v1/checkout/sessions", "POST")
    request: dict[str, Any] = {"headers": api.admin}
    if "token" in overrides:
        algorithm, key, claims = overrides.pop("token")
        request["headers"] = _bearer(jwt.encode(claims, key, algorithm=algorithm))
    request.update(overrides)
    if "content" in request:
        request["headers"] = {**request["headers"], "Content-Type": "application/json"}
    if "json" not in request and "content" not in request:
        request["json"] = _valid_body()

    response = await api.client.post("/payments/checkout", **request)

    assert response.status_code == status, response.text
    assert assert_error_shape(response)["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await api.counts() == before
    assert stripe.calls("/v1/checkout/sessions", "POST") == creations


async def test_validation_errors_name_the_field(api: Api) -> None:
    response = await api.client.post(
        "/payments/checkout", json=_valid_body(amount=0), headers=api.admin
    )
    error = assert_error_shape(response)
    assert error["message"].startswith("amount:")
    assert error["fields"] == [{"field": "amount", "message": "Input should be greater than 0"}]


async def test_a_second_window_for_an_unsettled_auction_is_a_conflict(api: Api) -> None:
    await api.open_window(auctionId="auc-twice")
    before = await api.counts()
    response = await api.client.post(
        "/payments/checkout", json=_valid_body(auctionId="auc-twice"), headers=api.admin
    )
    assert response.status_code == 409
    assert assert_error_shape(response)["code"] == "window_already_open"
    assert await api.counts() == before


async def test_stripe_down_at_creation_is_503_and_stores_nothing(
    api: Api, stripe: RunningStripe
) -> None:
    before = await api.counts()
    stripe.stop()
    response = await api.client.post("/payments/checkout", json=_valid_body(), headers=api.admin)
    assert response.status_code == 503, response.text
    assert assert_error_shape(response)["code"] == "payment_provider_unavailable"
    assert int(response.headers["retry-after"]) > 0
    assert await api.counts() == before


async def test_an_amount_below_stripes_minimum_is_422_amount_too_small(api: Api) -> None:
    response = await api.client.post(
        "/payments/checkout", json=_valid_body(amount=49, currency="eur"), headers=api.admin
    )

    assert response.status_code == 422, response.text
    error = assert_error_shape(response)
    assert error["code"] == "amount_too_small"
    assert "0.50" in error["message"]
    assert await count_rows(api.container, "payment_sessions") == 0
