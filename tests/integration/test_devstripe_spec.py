"""The local Stripe held to Stripe's published API description (the vendored extract of
`stripe/openapi`): it refuses what Stripe refuses, and every object it returns has the shape
Stripe's `checkout.session` schema gives."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from devstripe.testing import RunningStripe

from devstripe import spec

KEY = {"Authorization": "Bearer sk_test_spec"}


def a_session(**extra: str) -> dict[str, str]:
    return {
        "mode": "payment",
        "line_items[0][quantity]": "1",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "Lot 1",
        "expires_at": str(int(time.time()) + 3600),
        "success_url": "https://market.example/paid",
        **extra,
    }


async def call(
    stripe: RunningStripe,
    method: str,
    path: str,
    *,
    data: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    account: str | None = None,
) -> httpx.Response:
    headers = dict(KEY)
    if account:
        headers["Stripe-Account"] = account
    async with httpx.AsyncClient(base_url=stripe.url) as client:
        return await client.request(method, path, data=data, params=params, headers=headers)


def test_the_extract_names_its_source_and_api_version() -> None:
    info = spec.spec()["info"]
    assert info["version"] == spec.api_version() == "2023-08-16"
    assert info["x-source"].startswith("github.com/stripe/openapi@")
    assert set(spec.spec()["paths"]) == {
        "/v1/checkout/sessions",
        "/v1/checkout/sessions/{session}",
        "/v1/checkout/sessions/{session}/expire",
    }


@pytest.mark.parametrize(
    ("extra", "code", "param"),
    [
        ({"bogus_param": "1"}, "parameter_unknown", "bogus_param"),
        (
            {"line_items[0][price_data][colour]": "red"},
            "parameter_unknown",
            "line_items[0][price_data][colour]",
        ),
        ({"mode": "rent"}, "parameter_invalid_string", "mode"),
        ({"client_reference_id": "x" * 300}, "parameter_invalid_string", "client_reference_id"),
        ({"expires_at": "soon"}, "parameter_invalid_integer", "expires_at"),
        (
            {"after_expiration[recovery][enabled]": "maybe"},
            "parameter_invalid_boolean",
            "after_expiration[recovery][enabled]",
        ),
        (
            {"payment_intent_data[capture_method]": "later"},
            "parameter_invalid_string",
            "payment_intent_data[capture_method]",
        ),
    ],
)
async def test_a_body_the_spec_does_not_allow_is_refused_in_stripes_shape(
    stripe: RunningStripe, extra: dict[str, str], code: str, param: str
) -> None:
    response = await call(stripe, "POST", "/v1/checkout/sessions", data=a_session(**extra))

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert error["message"]
    listed = await call(stripe, "GET", "/v1/checkout/sessions")
    assert listed.json()["data"] == []


async def test_an_expire_with_an_unknown_parameter_is_refused(stripe: RunningStripe) -> None:
    created = (await call(stripe, "POST", "/v1/checkout/sessions", data=a_session())).json()

    response = await call(
        stripe, "POST", f"/v1/checkout/sessions/{created['id']}/expire", data={"now": "1"}
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parameter_unknown"
    assert stripe.session(created["id"])["status"] == "open"


async def test_every_returned_session_matches_the_checkout_session_schema(
    stripe: RunningStripe,
) -> None:
    returned: list[dict[str, Any]] = []
    made = await call(
        stripe,
        "POST",
        "/v1/checkout/sessions",
        data=a_session(
            client_reference_id="pw_1",
            **{"metadata[sessionId]": "pw_1", "after_expiration[recovery][enabled]": "false"},
        ),
    )
    returned.append(made.json())
    on_account = await call(
        stripe,
        "POST",
        "/v1/checkout/sessions",
        data=a_session(**{"payment_intent_data[application_fee_amount]": "100"}),
        account="acct_1Spec",
    )
    returned.append(on_account.json())
    stripe.complete(on_account.json()["id"])
    returned.append(
        (
            await call(
                stripe,
                "GET",
                f"/v1/checkout/sessions/{on_account.json()['id']}",
                params={"expand[0]": "payment_intent"},
                account="acct_1Spec",
            )
        ).json()
    )
    returned.append(
        (await call(stripe, "POST", f"/v1/checkout/sessions/{made.json()['id']}/expire")).json()
    )
    listed = (await call(stripe, "GET", "/v1/checkout/sessions")).json()
    returned.extend(listed["data"])

    assert len(returned) == 5
    for session in returned:
        assert spec.problems(session, "checkout.session") == [], session["id"]


async def test_lists_honour_their_filters_and_the_account(stripe: RunningStripe) -> None:
    first = (await call(stripe, "POST", "/v1/checkout/sessions", data=a_session())).json()
    second = (await call(stripe, "POST", "/v1/checkout/sessions", data=a_session())).json()
    third = (await call(stripe, "POST", "/v1/checkout/sessions", data=a_session())).json()
    elsewhere = (
        await call(stripe, "POST", "/v1/checkout/sessions", data=a_session(), account="acct_1L")
    ).json()
    paid = stripe.complete(second["id"])
    await call(stripe, "POST", f"/v1/checkout/sessions/{third['id']}/expire")

    async def ids(account: str | None = None, **params: str) -> list[str]:
        response = await call(
            stripe, "GET", "/v1/checkout/sessions", params=params, account=account
        )
        assert response.status_code == 200, response.text
        return [session["id"] for session in response.json()["data"]]

    assert await ids() == [third["id"], second["id"], first["id"]]
    assert await ids(account="acct_1L") == [elsewhere["id"]]
    assert await ids(status="open") == [first["id"]]
    assert await ids(payment_intent=paid["payment_intent"]) == [second["id"]]
    assert await ids(limit="1", starting_after=third["id"]) == [second["id"]]
    assert await ids(ending_before=first["id"]) == [third["id"], second["id"]]
    assert await ids(**{"created[gte]": str(first["created"])}) == await ids()
    assert await ids(**{"created[lt]": str(first["created"])}) == []


@pytest.mark.parametrize(
    ("extra", "account", "param"),
    [
        (
            {"payment_intent_data[transfer_data][destination]": "acct_1Maker"},
            "acct_1Maker",
            "payment_intent_data[transfer_data]",
        ),
        (
            {"payment_intent_data[transfer_data][destination]": "ba_123"},
            None,
            "payment_intent_data[transfer_data][destination]",
        ),
        (
            {"payment_intent_data[application_fee_amount]": "999999"},
            None,
            "payment_intent_data[application_fee_amount]",
        ),
    ],
)
async def test_connect_terms_stripe_refuses_are_refused(
    stripe: RunningStripe, extra: dict[str, str], account: str | None, param: str
) -> None:
    response = await call(
        stripe, "POST", "/v1/checkout/sessions", data=a_session(**extra), account=account
    )

    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
