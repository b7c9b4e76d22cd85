"""A buyer's payment record and the repeat non-payers, reached the way users reach them: windows
opened through the API, paid through Stripe's signed webhook, terminated by an admin and by a
maker, closed by the expiry pass (the old ones by a second service whose clock and Stripe run
days back); then read over HTTP, over PostgreSQL and the local Stripe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_harness import Api, api_settings, assert_error_shape, running_api
from devstripe.events import event_for, signature_header
from devstripe.testing import RunningStripe
from pydantic import SecretStr
from seeding import old_unpaid_window, seed_windows

from payment_window.api.schemas import BuyerRecordOut
from payment_window.config import Settings
from payment_window.domain.session import CloseReason

WEBHOOK_SECRET = "whsec_buyer_record_0123456789"
NO_REASONS = {reason.value: 0 for reason in CloseReason}


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    settings = api_settings(
        pg_settings,
        stripe,
        stripe_webhook_secret=SecretStr(WEBHOOK_SECRET),
        stripe_expire_rps=100_000.0,
    )
    async with running_api(settings) as running:
        yield running


async def _pay(api: Api, stripe: RunningStripe, session_id: str) -> None:
    """The buyer pays at Stripe; Stripe tells the service with a signed webhook."""
    async with api.container.uow() as uow:
        session = await uow.sessions.get(session_id)
    assert session is not None and session.checkout_session_id
    payload = event_for(stripe.complete(session.checkout_session_id), "checkout.session.completed")
    response = await api.client.post(
        "/payments/stripe/webhook",
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(payload, WEBHOOK_SECRET),
        },
    )
    assert response.status_code == 200, response.text


async def _terminate(api: Api, session_id: str, headers: dict[str, str]) -> None:
    response = await api.client.post(
        f"/payments/window/{session_id}/override",
        json={"action": "terminate", "reason": "buyer stopped answering"},
        headers=headers,
    )
    assert response.status_code == 200, response.text


async def _record(api: Api, buyer_id: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(
        f"/payments/buyers/{buyer_id}/record", params=params, headers=api.admin
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    BuyerRecordOut.model_validate(body)
    return body


async def _summary(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/payments/windows/summary", params=params, headers=api.admin)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_record_counts_what_happened_to_a_buyers_windows(
    api: Api, stripe: RunningStripe
) -> None:
    repeat, good, once = "by-repeat", "by-good", "by-once"
    await api.set_policy("maker-lenient", makers_may_override=True)
    maker = api.auth("maker", "maker-user", maker_id="maker-lenient")

    # by-repeat: one paid, one still open, one closed by the expiry pass at its deadline, one
    # terminated by the maker, and two by an admin, the last of them its latest close.
    paid = await api.open_window(buyerId=repeat)
    await _pay(api, stripe, paid["sessionId"])
    still_open = await api.open_window(buyerId=repeat, windowMinutes=600)
    [elapsed] = await seed_windows(
        api.container, stripe, 1, deadline=datetime.now(UTC) - timedelta(minutes=5), buyer_id=repeat
    )
    report = await api.container.expiry_task().run_pass()
    assert report.claimed == 1
    by_maker = await api.open_window(buyerId=repeat, makerId="maker-lenient")
    await _terminate(api, by_maker["sessionId"], maker)
    first_admin = await api.open_window(buyerId=repeat)
    await _terminate(api, first_admin["sessionId"], api.admin)
    before_last = datetime.now(UTC)
    last_admin = await api.open_window(buyerId=repeat)
    await _terminate(api, last_admin["sessionId"], api.admin)
    after_last = datetime.now(UTC)
    # Opened 100 days ago: outside the default 90 days, inside 120.
    old = await old_unpaid_window(api.container.settings, repeat, days_ago=100)

    for _ in range(2):
        await _pay(api, stripe, (await api.open_window(buyerId=good))["sessionId"])
    await _terminate(api, (await api.open_window(buyerId=once))["sessionId"], api.admin)

    record = await _record(api, repeat)
    assert record["buyerId"] == repeat and record["days"] == 90
    assert (record["opened"], record["paid"], record["unpaid"], record["unsettled"]) == (6, 1, 4, 1)
    assert record["unpaidByReason"] == {
        **NO_REASONS,
        "window_elapsed": 1,
        "maker_terminated": 1,
        "admin_terminated": 2,
    }
    last = record["lastUnpaid"]
    assert last["sessionId"] == last_admin["sessionId"]
    assert last["auctionId"] == last_admin["auctionId"]
    assert last["reason"] == "admin_terminated"
    assert before_last <= datetime.fromisoformat(last["closedAt"]) <= after_last
    server_time = datetime.fromisoformat(record["serverTime"])
    assert datetime.fromisoformat(record["since"]) == server_time - timedelta(days=90)

    longer = await _record(api, repeat, days=120)
    assert (longer["opened"], longer["unpaid"], longer["days"]) == (7, 5, 120)
    assert longer["unpaidByReason"]["window_elapsed"] == 2
    # The old window closed long before the others: the last unpaid stays the latest close.
    assert longer["lastUnpaid"]["sessionId"] == last_admin["sessionId"]
    shortest = await _record(api, repeat, days=1)
    assert shortest["opened"] == 6

    assert (await _record(api, good))["paid"] == 2
    assert (await _record(api, good))["lastUnpaid"] is None
    nobody = await _record(api, "by-never-seen")
    assert (nobody["opened"], nobody["unpaid"], nobody["lastUnpaid"]) == (0, 0, None)
    assert nobody["unpaidByReason"] == NO_REASONS

    summary = await _summary(api)
    assert summary["buyerPeriodDays"] == 90
    assert summary["repeatNonPayers"] == [
        {"buyerId": repeat, "unpaid": 4, "opened": 6},
        {"buyerId": once, "unpaid": 1, "opened": 1},
    ]
    assert (await _summary(api, days=120))["repeatNonPayers"][0] == {
        "buyerId": repeat,
        "unpaid": 5,
        "opened": 7,
    }

    # The buyer's windows, as the operations page links to them: every one, old included.
    response = await api.client.get(
        "/payments/windows", params={"buyerId": repeat, "limit": 200}, headers=api.admin
    )
    assert response.status_code == 200, response.text
    listed = {item["sessionId"] for item in response.json()["items"]}
    assert listed == {
        paid["sessionId"],
        still_open["sessionId"],
        elapsed.id,
        by_maker["sessionId"],
        first_admin["sessionId"],
        last_admin["sessionId"],
        old.id,
    }
    assert {item["buyerId"] for item in response.json()["items"]} == {repeat}


async def test_ties_rank_by_buyer_id_and_only_the_top_ten_are_listed(api: Api) -> None:
    for number in range(12):
        opened = await api.open_window(buyerId=f"by-{number:02d}")
        await _terminate(api, opened["sessionId"], api.admin)
    extra = await api.open_window(buyerId="by-11")
    await _terminate(api, extra["sessionId"], api.admin)

    listed = (await _summary(api))["repeatNonPayers"]

    assert [entry["buyerId"] for entry in listed] == ["by-11", *(f"by-{n:02d}" for n in range(9))]
    assert listed[0] == {"buyerId": "by-11", "unpaid": 2, "opened": 2}


CALLERS: dict[str, dict[str, str] | None] = {
    "admin": {"role": "admin", "sub": "ops"},
    "maker": {"role": "maker", "sub": "alice", "maker_id": "maker-1"},
    "the buyer": {"role": "buyer", "sub": "by-asked"},
    "service": {"role": "service", "sub": "marketplace"},
    "no token": None,
}
EXPECTED = {"admin": 200, "maker": 403, "the buyer": 403, "service": 403, "no token": 401}


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_only_admins_read_a_buyers_record(api: Api, caller: str) -> None:
    await api.open_window(buyerId="by-asked")
    who = CALLERS[caller]
    headers = api.auth(**who) if who else {}
    for url in ("/payments/buyers/by-asked/record", "/payments/windows/summary"):
        response = await api.client.get(url, headers=headers)
        assert response.status_code == EXPECTED[caller], (url, response.text)
        if EXPECTED[caller] != 200:
            assert assert_error_shape(response)["code"] == (
                "unauthorized" if who is None else "forbidden"
            )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/payments/buyers/by-1/record", {"days": 0}),
        ("/payments/buyers/by-1/record", {"days": 3651}),
        ("/payments/buyers/by-1/record", {"days": "ninety"}),
        ("/payments/buyers/by-1/record", {"days": "1.5"}),
        ("/payments/buyers/a%01b/record", {}),
        (f"/payments/buyers/{'b' * 129}/record", {}),
        ("/payments/windows/summary", {"days": 0}),
        ("/payments/windows/summary", {"days": 99999}),
        ("/payments/windows", {"buyerId": "a\x01b"}),
        ("/payments/windows", {"buyerId": ""}),
    ],
)
async def test_bad_buyer_ids_and_periods_are_refused_with_422(
    api: Api, path: str, params: dict[str, Any]
) -> None:
    response = await api.client.get(path, params=params, headers=api.admin)
    assert response.status_code == 422, response.text
    assert assert_error_shape(response)["code"] == "invalid_request"


async def test_the_longest_period_reaches_back_ten_years(api: Api) -> None:
    old = await old_unpaid_window(api.container.settings, "by-ancient", days_ago=3000)
    record = await _record(api, "by-ancient", days=3650)
    assert record["unpaid"] == 1 and record["lastUnpaid"]["sessionId"] == old.id
    assert (await _record(api, "by-ancient"))["opened"] == 0
