"""Input built to break things gets a 4xx and changes nothing: signed webhooks of odd shapes,
signatures from the future, and pagination cursors that decode to extreme values."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from test_stripe_webhooks import COMPLETED, SECRET, deliver, opened, signature, stored

from payment_window.config import Settings


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(pg_settings, stripe, stripe_webhook_secret=SecretStr(SECRET))
    async with running_api(settings) as running:
        yield running


def _event(checkout_id: str, *, event_id: str = "evt_hostile", **session: Any) -> str:
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": COMPLETED,
            "data": {
                "object": {
                    "id": checkout_id,
                    "object": "checkout.session",
                    "status": "complete",
                    "payment_status": "paid",
                    "expires_at": int(time.time()) + 3600,
                    **session,
                }
            },
        }
    )


HOSTILE_EVENTS = {
    "expires_at 1e20": lambda cs: _event(cs, expires_at=1e20),
    "expires_at 10**20": lambda cs: _event(cs, expires_at=10**20),
    "expires_at negative": lambda cs: _event(cs, expires_at=-(10**12)),
    "expires_at a string": lambda cs: _event(cs, expires_at="tomorrow"),
    "300-character event id": lambda cs: _event(cs, event_id="evt_" + "x" * 296),
    "NUL in the event id": lambda cs: _event(cs, event_id="evt_\u0000x"),
    "NUL in the session id": lambda cs: _event(cs + "\u0000"),
    "300-character session id": lambda cs: _event("cs_" + "x" * 297),
    "NUL in the type": lambda cs: _event(cs).replace(COMPLETED, COMPLETED + "\\u0000"),
    "NUL in the url": lambda cs: _event(cs, url="https://x/\u0000"),
    "status an object": lambda cs: _event(cs, status={"a": 1}),
    "5,000 levels of nesting": lambda cs: _event(cs).replace(
        '"object": "event"', '"object": ' + "[" * 5000 + "]" * 5000
    ),
    # Past Python's 4,300-digit limit on int parsing: json.loads raises ValueError.
    "a 5,000-digit number": lambda cs: _event(cs).replace(
        '"status"', '"amount_total": ' + "9" * 5000 + ', "status"'
    ),
}


@pytest.mark.parametrize("make", list(HOSTILE_EVENTS.values()), ids=list(HOSTILE_EVENTS))
async def test_a_signed_webhook_of_a_hostile_shape_is_400_and_changes_nothing(
    api: Api, make: Any
) -> None:
    session_id, checkout_id = await opened(api)
    payload = make(checkout_id)
    before = await api.counts()

    response = await deliver(api, payload)

    assert response.status_code == 400, response.text
    assert assert_error_shape(response)["code"] == "invalid_webhook"
    assert await api.counts() == before
    assert (await stored(api, session_id))["status"] == "open"


@pytest.mark.parametrize("ahead", [301, 3600, 10**12, 10**40], ids=str)
async def test_a_signature_from_the_future_is_refused(api: Api, ahead: int) -> None:
    session_id, checkout_id = await opened(api)
    payload = _event(checkout_id)

    response = await deliver(api, payload, signature(payload, at=int(time.time()) + ahead))

    assert response.status_code == 400, response.text
    assert assert_error_shape(response)["code"] == "invalid_webhook"
    assert (await stored(api, session_id))["status"] == "open"


async def test_a_signature_a_little_ahead_of_our_clock_is_fine(api: Api) -> None:
    session_id, checkout_id = await opened(api)
    payload = _event(checkout_id)

    response = await deliver(api, payload, signature(payload, at=int(time.time()) + 60))

    assert response.status_code == 200, response.text
    assert (await stored(api, session_id))["status"] == "paid"


def _cursor(*parts: Any) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def _fingerprint(api: Api) -> Any:
    for _ in range(2):
        await api.open_window()
    response = await api.client.get("/payments/windows", params={"limit": 1}, headers=api.admin)
    cursor = response.json()["nextCursor"]
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))[2]


@pytest.mark.parametrize(
    "parts",
    [
        ("9999-12-31T23:59:59-14:00", "pw_1"),
        ("0001-01-01T00:00:00+14:00", "pw_1"),
        ("2030-01-01T00:00:00", "pw_1"),
        ("2030-01-01T00:00:00Z", "pw_\u0000"),
        ("2030-01-01T00:00:00Z", "x" * 200),
        ("2030-01-01T00:00:00Z", 7),
        (12, "pw_1"),
    ],
    ids=["after-9999", "before-0001", "naive", "nul-id", "long-id", "number-id", "number-time"],
)
async def test_a_crafted_cursor_is_a_400(api: Api, parts: tuple[Any, Any]) -> None:
    fingerprint = await _fingerprint(api)
    cursor = _cursor(*parts, fingerprint)

    response = await api.client.get(
        "/payments/windows", params={"cursor": cursor, "limit": 1}, headers=api.admin
    )

    assert response.status_code == 400, response.text
    assert assert_error_shape(response)["code"] == "invalid_cursor"


async def test_a_deeply_nested_cursor_is_refused(api: Api) -> None:
    cursor = base64.urlsafe_b64encode(b"[" * 380).decode().rstrip("=")
    response = await api.client.get(
        "/payments/windows", params={"cursor": cursor}, headers=api.admin
    )
    assert 400 <= response.status_code < 500, response.text
    assert_error_shape(response)
