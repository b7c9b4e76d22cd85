"""StripeGateway with the official SDK against the local Stripe server on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from devstripe.control import Fault, FaultKind
from devstripe.testing import RunningStripe
from stripe import _http_client

from payment_window.adapters.stripe import StripeGateway
from payment_window.config import Settings
from payment_window.domain.errors import (
    CheckoutNotOpen,
    CheckoutRefused,
    CheckoutSessionMissing,
    InvalidWebhook,
    PaymentProviderUnavailable,
)
from payment_window.domain.session import PaymentSession

RETRIES = 2
WEBHOOK_SECRET = "whsec_test_secret"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningStripe]:
    with RunningStripe() as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_server(server: RunningStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    server.start()
    server.reset()
    # The SDK's own backoff (0.5 s doubling) is a vendor knob; shrink it so tests stay fast.
    monkeypatch.setattr(_http_client.HTTPClient, "INITIAL_DELAY", 0.001)
    monkeypatch.setattr(_http_client.HTTPClient, "MAX_DELAY", 0.01)


def make_gateway(server: RunningStripe, **kwargs: Any) -> StripeGateway:
    settings = Settings(
        stripe_api_key=server.api_key,  # type: ignore[arg-type]
        stripe_api_base=server.url,
        stripe_webhook_secret=WEBHOOK_SECRET,  # type: ignore[arg-type]
        stripe_max_network_retries=RETRIES,
        public_base_url="http://shop.test",
    )
    return StripeGateway.from_settings(settings, **kwargs)


@pytest.fixture
async def gateway(server: RunningStripe) -> AsyncIterator[StripeGateway]:
    gateway = make_gateway(server)
    yield gateway
    await gateway.close()


def a_session(session_id: str = "ps_1") -> PaymentSession:
    now = datetime.now(UTC)
    return PaymentSession(
        id=session_id,
        auction_id="auc_1",
        maker_id="mk_1",
        buyer_id="by_1",
        amount=12_500,
        currency="EUR",
        expires_at=now + timedelta(hours=2),
        created_at=now,
        updated_at=now,
    )


def in_hours(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


async def test_create_opens_an_unrecoverable_session_carrying_our_ids(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    expires_at = in_hours(2).replace(microsecond=0)

    created = await gateway.create(a_session(), expires_at, "create-ps_1")

    assert created.id.startswith("cs_test_")
    assert (created.status, created.payment_status) == ("open", "unpaid")
    assert created.expires_at == expires_at
    assert created.url and created.url.startswith(server.url)
    stored = server.session(created.id)
    assert stored["metadata"] == {
        "sessionId": "ps_1",
        "auctionId": "auc_1",
        "makerId": "mk_1",
        "buyerId": "by_1",
    }
    assert stored["after_expiration"]["recovery"]["enabled"] is False
    assert (stored["amount_total"], stored["currency"], stored["mode"]) == (
        12_500,
        "eur",
        "payment",
    )
    assert stored["success_url"] == "http://shop.test/checkout/ps_1?checkout=success"


async def test_retrieve_and_expire(gateway: StripeGateway) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert await gateway.retrieve(created.id) == created
    expired = await gateway.expire(created.id, "expire-ps_1")

    assert (expired.status, expired.url) == ("expired", None)
    assert (await gateway.retrieve(created.id)).status == "expired"


async def test_same_idempotency_key_replays_instead_of_creating_twice(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    first = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    again = await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert again.id == first.id
    assert server.calls("/v1/checkout/sessions", method="POST") == 2
    assert len(server.app.store.list(100)["data"]) == 1


async def test_expire_replayed_with_its_key_does_not_report_not_open(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")

    await gateway.expire(created.id, "expire-ps_1")
    replayed = await gateway.expire(created.id, "expire-ps_1")

    assert replayed.status == "expired"
    assert server.calls("/expire") == 2


async def test_expire_after_buyer_paid_reports_complete(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    server.complete(created.id, paid=True)

    with pytest.raises(CheckoutNotOpen) as refused:
        await gateway.expire(created.id, "expire-ps_1")

    assert (refused.value.checkout_session_id, refused.value.status) == (created.id, "complete")
    assert server.calls("/expire") == 1  # a 400 is an answer, not something to retry


async def test_expire_twice_with_new_keys_reports_expired(gateway: StripeGateway) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    await gateway.expire(created.id, "expire-ps_1-a")

    with pytest.raises(CheckoutNotOpen) as refused:
        await gateway.expire(created.id, "expire-ps_1-b")

    assert refused.value.status == "expired"


async def test_unparseable_not_open_message_falls_back_to_retrieve(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    server.complete(created.id, paid=False)
    server.inject(
        Fault(
            FaultKind.ERROR,
            status=400,
            path="/expire",
            message='Only Checkout Sessions with a status in ["open"] can be expired.',
        )
    )

    with pytest.raises(CheckoutNotOpen) as refused:
        await gateway.expire(created.id, "expire-ps_1")

    assert refused.value.status == "complete"
    assert server.calls(f"/v1/checkout/sessions/{created.id}", method="GET") == 1


async def test_a_server_error_is_replayed_to_the_sdks_retries_under_the_same_key(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.fail_next(1, 500)

    # The SDK retries a 500 with the same key; Stripe answers the saved 500 each time, so only
    # a new key (our next attempt) can create the session.
    with pytest.raises(PaymentProviderUnavailable):
        await gateway.create(a_session(), in_hours(1), "create-ps_1-attempt-1")
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1-attempt-2")

    assert created.status == "open"
    assert server.calls("/v1/checkout/sessions", method="POST") == RETRIES + 2
    assert len(server.app.store.list(100)["data"]) == 1


def raw_client(server: RunningStripe) -> stripe.StripeClient:
    """The SDK without retries, to see each of Stripe's answers."""
    return stripe.StripeClient(
        server.api_key, base_addresses={"api": server.url}, max_network_retries=0
    )


CREATE = {
    "mode": "payment",
    "line_items": [
        {
            "quantity": 1,
            "price_data": {
                "currency": "eur",
                "unit_amount": 1000,
                "product_data": {"name": "Lot 1"},
            },
        }
    ],
    "success_url": "https://market.example/paid",
}


def test_a_saved_500_is_replayed_with_idempotent_replayed(server: RunningStripe) -> None:
    client = raw_client(server)
    server.fail_next(1, 500)

    with pytest.raises(stripe.APIError) as first:
        client.v1.checkout.sessions.create(CREATE, {"idempotency_key": "k-500"})
    with pytest.raises(stripe.APIError) as replayed:
        client.v1.checkout.sessions.create(CREATE, {"idempotency_key": "k-500"})

    assert (first.value.http_status, replayed.value.http_status) == (500, 500)
    assert replayed.value.json_body == first.value.json_body
    assert replayed.value.headers is not None
    assert replayed.value.headers.get("idempotent-replayed") == "true"
    assert server.app.store.list(100)["data"] == []


def test_a_rate_limited_request_is_not_saved_under_its_key(server: RunningStripe) -> None:
    client = raw_client(server)
    server.rate_limit_next(1)

    with pytest.raises(stripe.RateLimitError):
        client.v1.checkout.sessions.create(CREATE, {"idempotency_key": "k-429"})
    created = client.v1.checkout.sessions.create(CREATE, {"idempotency_key": "k-429"})

    assert created.status == "open"
    assert created.last_response.headers.get("idempotent-replayed") is None


def test_a_key_reused_with_other_parameters_is_stripes_idempotency_error(
    server: RunningStripe,
) -> None:
    client = raw_client(server)
    client.v1.checkout.sessions.create(CREATE, {"idempotency_key": "k-reused"})

    with pytest.raises(stripe.IdempotencyError) as refused:
        client.v1.checkout.sessions.create(
            {**CREATE, "client_reference_id": "other"}, {"idempotency_key": "k-reused"}
        )

    assert refused.value.http_status == 400
    assert refused.value.user_message == (
        "Keys for idempotent requests can only be used with the same parameters they were "
        "first used with. Try using a key other than 'k-reused' if you meant to execute a "
        "different request."
    )
    assert len(server.app.store.list(100)["data"]) == 1


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (49, "EUR", "must add up to at least €0.50 eur"),
        (29, "GBP", "must add up to at least £0.30 gbp"),
        (49, "JPY", "must add up to at least ¥50 jpy"),
    ],
)
async def test_an_amount_below_stripes_minimum_is_refused_as_amount_too_small(
    gateway: StripeGateway, server: RunningStripe, amount: int, currency: str, message: str
) -> None:
    session = replace(a_session(), amount=amount, currency=currency)

    with pytest.raises(CheckoutRefused, match=message) as refused:
        await gateway.create(session, in_hours(1), "create-ps_1")

    assert refused.value.stripe_code == "amount_too_small"
    assert server.app.store.list(100)["data"] == []


async def test_the_minimum_itself_is_accepted(gateway: StripeGateway) -> None:
    session = replace(a_session(), amount=30, currency="GBP")

    assert (await gateway.create(session, in_hours(1), "create-ps_1")).status == "open"


async def test_an_unknown_checkout_session_is_missing_for_retrieve_and_expire(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    with pytest.raises(CheckoutSessionMissing) as on_retrieve:
        await gateway.retrieve("cs_test_gone")
    with pytest.raises(CheckoutSessionMissing) as on_expire:
        await gateway.expire("cs_test_gone", "expire-gone")

    assert on_retrieve.value.checkout_session_id == "cs_test_gone"
    assert on_expire.value.checkout_session_id == "cs_test_gone"
    # Not a transient failure: the SDK did not retry it.
    assert server.calls("/cs_test_gone") == 1
    assert server.calls("/cs_test_gone/expire") == 1


async def test_server_errors_beyond_the_retry_budget_are_unavailable(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    server.fail_next(RETRIES + 1, 503, path="/expire")

    with pytest.raises(PaymentProviderUnavailable):
        await gateway.expire(created.id, "expire-ps_1")

    assert server.calls("/expire") == RETRIES + 1
    assert server.session(created.id)["status"] == "open"


async def test_a_stopped_server_is_unavailable(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    server.stop()
    try:
        with pytest.raises(PaymentProviderUnavailable):
            await gateway.retrieve(created.id)
    finally:
        server.start()

    assert (await gateway.retrieve(created.id)).status == "open"


async def test_a_dropped_connection_is_retried(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.drop_next(1)

    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert created.status == "open"
    assert server.calls("/v1/checkout/sessions", method="POST") == 2


async def test_connections_dropped_beyond_the_retry_budget_are_unavailable(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.drop_next(RETRIES + 1)

    with pytest.raises(PaymentProviderUnavailable):
        await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert server.calls("/v1/checkout/sessions", method="POST") == RETRIES + 1


async def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    server.drop_next(1, after_processing=True, path="/expire")

    expired = await gateway.expire(created.id, "expire-ps_1")

    # Stripe expired it on the first try; the SDK's retry carried the same key, so it got
    # the stored answer instead of "not open".
    assert expired.status == "expired"
    assert server.calls("/expire") == 2


async def test_a_slow_answer_times_out_and_is_retried(server: RunningStripe) -> None:
    gateway = make_gateway(server, timeout_seconds=0.3)
    try:
        server.delay_next(1.0)
        created = await gateway.create(a_session(), in_hours(1), "create-ps_1")
    finally:
        await gateway.close()

    assert created.status == "open"
    assert server.calls("/v1/checkout/sessions", method="POST") == 2


async def test_a_rate_limit_is_not_retried_and_is_unavailable(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.rate_limit_next(1)

    with pytest.raises(PaymentProviderUnavailable, match="rate limit"):
        await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert server.calls("/v1/checkout/sessions") == 1


async def test_lock_timeouts_are_retried_by_the_sdk(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.rate_limit_next(RETRIES, lock_timeout=True)

    created = await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert created.status == "open"
    assert server.calls("/v1/checkout/sessions") == RETRIES + 1


async def test_a_429_storm_beyond_the_retry_budget_is_unavailable(
    gateway: StripeGateway, server: RunningStripe
) -> None:
    server.rate_limit_next(RETRIES + 1, lock_timeout=True)

    with pytest.raises(PaymentProviderUnavailable):
        await gateway.create(a_session(), in_hours(1), "create-ps_1")

    assert server.calls("/v1/checkout/sessions") == RETRIES + 1


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (0.25, "must be at least 30 minutes from Checkout Session creation"),
        (25, "must be less than 24 hours from Checkout Session creation"),
    ],
)
async def test_expiry_outside_stripes_range_is_refused(
    gateway: StripeGateway, server: RunningStripe, hours: float, message: str
) -> None:
    with pytest.raises(CheckoutRefused, match=message) as refused:
        await gateway.create(a_session(), in_hours(hours), "create-ps_1")

    assert isinstance(refused.value.__cause__, stripe.InvalidRequestError)
    assert refused.value.__cause__.param == "expires_at"
    assert server.calls("/v1/checkout/sessions") == 1


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """Stripe's documented scheme: v1 = HMAC-SHA256(secret, f"{t}.{payload}")."""
    timestamp = int(time.time()) if at is None else at
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


EVENT = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {"id": "cs_test_1", "object": "checkout.session"}},
    }
).encode()


async def test_without_an_api_key_stripe_is_unavailable() -> None:
    gateway = StripeGateway.from_settings(Settings(stripe_api_key=None))
    try:
        with pytest.raises(PaymentProviderUnavailable, match="not configured"):
            await gateway.retrieve("cs_test_1")
    finally:
        await gateway.close()


def test_our_signature_matches_the_sdks() -> None:
    at = int(time.time())
    assert sign(EVENT, at=at) == stripe.WebhookSignature.generate_signature_header(
        EVENT.decode(), WEBHOOK_SECRET, at
    )


def test_a_validly_signed_webhook_is_parsed(gateway: StripeGateway) -> None:
    event = gateway.parse_webhook(EVENT, sign(EVENT))

    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["id"] == "cs_test_1"


@pytest.mark.parametrize(
    ("payload", "signature"),
    [
        pytest.param(EVENT.replace(b"completed", b"expired"), sign(EVENT), id="tampered"),
        pytest.param(EVENT, sign(EVENT, at=int(time.time()) - 301), id="stale"),
        pytest.param(EVENT, sign(EVENT, secret="whsec_other"), id="other-secret"),
        pytest.param(EVENT, None, id="unsigned"),
        pytest.param(EVENT, "garbage", id="malformed-header"),
        pytest.param(b"not json", sign(b"not json"), id="not-json"),
    ],
)
def test_an_untrustworthy_webhook_is_refused(
    gateway: StripeGateway, payload: bytes, signature: str | None
) -> None:
    with pytest.raises(InvalidWebhook):
        gateway.parse_webhook(payload, signature)
