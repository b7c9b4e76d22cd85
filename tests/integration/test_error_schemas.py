"""Real error answers match what `/openapi.json` declares for their route and status: the one
error shape, and the headers (`Retry-After`, `WWW-Authenticate`) declared beside it. Each answer
comes from an actual request against the app over a real store and the local Stripe server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema
import jwt
import pytest
from api_harness import Api, api_settings, running_api
from devstripe.testing import RunningStripe

from payment_window.config import Settings

STATUS = "/payments/checkout/{sessionId}/status"
OVERRIDE = "/payments/window/{sessionId}/override"
CHECKOUT = "/payments/checkout"


@pytest.fixture
async def api(sqlite_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(sqlite_settings, stripe)) as running:
        yield running


class Declared:
    """What the published description says a route answers with a given status."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.checked: set[tuple[str, str, int]] = set()

    def check(self, method: str, path: str, response: httpx.Response, code: str) -> None:
        """`response` has the declared body and required headers, and the expected `code`."""
        status = response.status_code
        assert 400 <= status < 600, (status, response.text)
        declared = self.spec["paths"][path][method.lower()]["responses"]
        assert str(status) in declared, f"{method} {path} answered an undeclared {status}"
        entry = declared[str(status)]
        schema = entry["content"]["application/json"]["schema"]
        document = {**schema, "components": self.spec["components"]}
        jsonschema.Draft202012Validator(document).validate(response.json())
        for name, header in entry.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, f"{method} {path} {status} lacks {name}"
        assert response.json()["error"]["code"] == code, response.text
        self.checked.add((method, path, status))


def _forged(api: Api) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "admin-1", "role": "admin", "iat": now, "exp": now + 600},
        "not-the-service-secret-0123456789abcdef",
        algorithm="HS256",
    )
    return {"Authorization": f"Bearer {token}"}


def _auction() -> dict[str, Any]:
    return {
        "auctionId": f"auc-{uuid.uuid4().hex[:10]}",
        "makerId": "maker-1",
        "buyerId": "buyer-1",
        "amount": 12_500,
        "currency": "usd",
        "windowMinutes": 30,
    }


async def test_error_answers_of_opening_a_window_match_their_declarations(
    api: Api, stripe: RunningStripe
) -> None:
    declared = Declared((await api.client.get("/openapi.json")).json())
    service = api.auth("service", "marketplace")
    post = api.client.post

    malformed = await post(
        CHECKOUT, content=b'{"auctionId": ', headers={**service, "Content-Type": "application/json"}
    )
    declared.check("POST", CHECKOUT, malformed, "malformed_json")
    declared.check("POST", CHECKOUT, await post(CHECKOUT, json=_auction()), "unauthorized")
    forged = await post(CHECKOUT, json=_auction(), headers=_forged(api))
    declared.check("POST", CHECKOUT, forged, "unauthorized")
    as_buyer = await post(CHECKOUT, json=_auction(), headers=api.auth("buyer"))
    declared.check("POST", CHECKOUT, as_buyer, "forbidden")
    invalid = await post(CHECKOUT, json={**_auction(), "amount": -5}, headers=service)
    declared.check("POST", CHECKOUT, invalid, "invalid_request")
    assert invalid.json()["error"]["fields"][0]["field"] == "amount"
    too_small = await post(CHECKOUT, json={**_auction(), "amount": 1}, headers=service)
    declared.check("POST", CHECKOUT, too_small, "amount_too_small")
    assert too_small.json()["error"]["minimumAmount"] == 50
    huge = await post(
        CHECKOUT,
        content=json.dumps({**_auction(), "pad": "x" * 70_000}).encode(),
        headers={**service, "Content-Type": "application/json"},
    )
    declared.check("POST", CHECKOUT, huge, "payload_too_large")

    auction = _auction()
    opened = await post(CHECKOUT, json=auction, headers={**service, "Idempotency-Key": "k-1"})
    assert opened.status_code == 201
    again = await post(CHECKOUT, json={**auction, "buyerId": "buyer-2"}, headers=service)
    declared.check("POST", CHECKOUT, again, "window_already_open")
    assert again.json()["error"]["sessionId"] == opened.json()["sessionId"]
    reused = await post(
        CHECKOUT, json={**auction, "amount": 999}, headers={**service, "Idempotency-Key": "k-1"}
    )
    declared.check("POST", CHECKOUT, reused, "idempotency_key_reused")

    stripe.fail_next(1, 500)
    stripe_down = await post(CHECKOUT, json=_auction(), headers=service)
    assert stripe_down.status_code == 503
    declared.check("POST", CHECKOUT, stripe_down, stripe_down.json()["error"]["code"])


async def test_error_answers_of_reading_and_overriding_match_their_declarations(
    api: Api,
) -> None:
    declared = Declared((await api.client.get("/openapi.json")).json())
    window = await api.open_window(windowMinutes=30)
    url = f"/payments/window/{window['sessionId']}/override"
    post = api.client.post

    unknown_action = await post(url, json={"action": "pause"}, headers=api.admin)
    declared.check("POST", OVERRIDE, unknown_action, "invalid_request")
    no_minutes = await post(url, json={"action": "extend"}, headers=api.admin)
    declared.check("POST", OVERRIDE, no_minutes, "invalid_request")
    forged = await post(url, json={"action": "terminate"}, headers=_forged(api))
    declared.check("POST", OVERRIDE, forged, "unauthorized")
    unknown = await post(
        "/payments/window/pw_nobody/override", json={"action": "terminate"}, headers=api.admin
    )
    declared.check("POST", OVERRIDE, unknown, "session_not_found")
    as_buyer = await post(url, json={"action": "terminate"}, headers=api.auth("buyer", "buyer-1"))
    assert as_buyer.status_code in (403, 404)
    declared.check("POST", OVERRIDE, as_buyer, as_buyer.json()["error"]["code"])
    bad_if_match = await post(
        url, json={"action": "terminate"}, headers={**api.admin, "If-Match": "soon"}
    )
    declared.check("POST", OVERRIDE, bad_if_match, "invalid_if_match")
    stale = await post(url, json={"action": "terminate"}, headers={**api.admin, "If-Match": "99"})
    assert stale.status_code == 412
    declared.check("POST", OVERRIDE, stale, stale.json()["error"]["code"])

    await api.set_policy("maker-1", max_minutes=10)
    over_policy = await post(url, json={"action": "extend", "minutes": 60}, headers=api.admin)
    declared.check("POST", OVERRIDE, over_policy, over_policy.json()["error"]["code"])
    assert over_policy.status_code == 422
    assert over_policy.json()["error"]["minutesStillAllowed"] == 10

    terminated = await post(url, json={"action": "terminate"}, headers=api.admin)
    assert terminated.status_code == 200
    closed = await post(url, json={"action": "terminate"}, headers=api.admin)
    assert closed.status_code == 409
    declared.check("POST", OVERRIDE, closed, closed.json()["error"]["code"])

    status_url = f"/payments/checkout/{window['sessionId']}/status"
    declared.check("GET", STATUS, await api.client.get(status_url), "unauthorized")
    forged_read = await api.client.get(status_url, headers=_forged(api))
    declared.check("GET", STATUS, forged_read, "unauthorized")
    not_theirs = await api.client.get(status_url, headers=api.auth("buyer", "someone-else"))
    declared.check("GET", STATUS, not_theirs, "session_not_found")
    events = "/payments/checkout/{sessionId}/events"
    no_events = await api.client.get(
        "/payments/checkout/pw_nobody/events", headers=api.auth("buyer")
    )
    declared.check("GET", events, no_events, "session_not_found")


async def test_error_answers_of_policy_operations_and_webhooks_match_their_declarations(
    api: Api,
) -> None:
    declared = Declared((await api.client.get("/openapi.json")).json())
    get, put = api.client.get, api.client.put
    policy = "/makers/{makerId}/policy"

    as_buyer = await put(
        "/makers/maker-1/policy",
        json={"maxExtensionMinutes": 5, "makersMayOverride": False, "onExpiry": "relist"},
        headers=api.auth("buyer"),
    )
    declared.check("PUT", policy, as_buyer, "forbidden")
    bad_policy = await put(
        "/makers/maker-1/policy",
        json={"maxExtensionMinutes": 5, "makersMayOverride": False, "onExpiry": "burn"},
        headers=api.admin,
    )
    declared.check("PUT", policy, bad_policy, "invalid_request")
    other_maker = await get("/makers/maker-1/policy", headers=api.auth("maker", "m", "maker-2"))
    declared.check("GET", policy, other_maker, "forbidden")

    declared.check(
        "GET",
        "/payments/windows",
        await get("/payments/windows?limit=0", headers=api.admin),
        "invalid_request",
    )
    declared.check(
        "GET",
        "/payments/windows",
        await get("/payments/windows", headers=api.auth("buyer")),
        "forbidden",
    )
    declared.check(
        "GET",
        "/payments/windows/summary",
        await get("/payments/windows/summary?days=0", headers=api.admin),
        "invalid_request",
    )
    declared.check(
        "GET",
        "/payments/buyers/{buyerId}/record",
        await get("/payments/buyers/b-1/record?days=99999", headers=api.admin),
        "invalid_request",
    )
    declared.check(
        "GET",
        "/payments/checkout/{sessionId}/audit",
        await get("/payments/checkout/pw_nobody/audit", headers=api.admin),
        "session_not_found",
    )

    webhook = "/payments/stripe/webhook"
    forged_event = await api.client.post(
        webhook,
        content=b'{"id": "evt_1", "type": "checkout.session.completed"}',
        headers={"Stripe-Signature": "t=1,v1=deadbeef", "Content-Type": "application/json"},
    )
    assert forged_event.status_code == 400
    declared.check("POST", webhook, forged_event, forged_event.json()["error"]["code"])


async def test_no_error_is_declared_in_fastapis_own_validation_shape(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(spec)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, entry in operation["responses"].items():
                if int(status) >= 400:
                    ref = entry["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (method, path, status)
    status_read = spec["paths"][STATUS]["get"]["responses"]["200"]
    assert status_read["headers"]["ETag"]["required"] is True
