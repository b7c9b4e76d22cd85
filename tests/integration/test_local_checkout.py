"""The embedded default end to end: the local Stripe stand-in's pay page completes a test
payment and tells the service through a signed webhook, as Stripe would."""

from __future__ import annotations

import time

import httpx
from devstripe.hosted import HostedCheckoutApp
from devstripe.server import ServerThread, bind
from devstripe.testing import TEST_API_KEY
from liveserver import ThreadServer
from pydantic import SecretStr

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings


def test_paying_on_the_local_pay_page_marks_the_window_paid(pg_settings: Settings) -> None:
    secret = "whsec_local_test"
    sock = bind("127.0.0.1", 0)
    settings = pg_settings.model_copy(
        update={
            "stripe_api_key": SecretStr(TEST_API_KEY),
            "stripe_api_base": f"http://127.0.0.1:{sock.getsockname()[1]}",
            "stripe_webhook_secret": SecretStr(secret),
            # Without it development keeps a generated secret in the working directory.
            "jwt_secret": SecretStr("local-checkout-secret-0123456789abcdef0123"),
        }
    )
    server = ThreadServer(create_app(settings))
    stand_in = HostedCheckoutApp(f"{server.url}/payments/stripe/webhook", secret)
    stripe_thread = ServerThread(stand_in, sock)
    stripe_thread.start()
    try:
        with server, httpx.Client(timeout=10) as client:
            service = {"Authorization": f"Bearer {mint_token(settings, 'shop', 'service')}"}
            buyer = {"Authorization": f"Bearer {mint_token(settings, 'buyer-1', 'buyer')}"}
            opened = client.post(
                f"{server.url}/payments/checkout",
                headers=service,
                json={
                    "auctionId": "auc-local",
                    "makerId": "mk-1",
                    "buyerId": "buyer-1",
                    "amount": 4200,
                    "currency": "eur",
                    "windowMinutes": 30,
                },
            ).json()

            page = client.get(opened["checkoutUrl"])
            assert page.status_code == 200 and "Pay 42.00 EUR" in page.text
            paid = client.post(opened["checkoutUrl"], follow_redirects=False)
            assert paid.status_code == 303
            assert f"/checkout/{opened['sessionId']}" in paid.headers["location"]

            status_url = f"{server.url}/payments/checkout/{opened['sessionId']}/status"
            for _ in range(50):
                status = client.get(status_url, headers=buyer).json()
                if status["status"] == "paid":
                    break
                time.sleep(0.1)
            assert status["status"] == "paid"
            assert status["remainingTime"] == 0
            again = client.get(opened["checkoutUrl"])
            assert "complete" in again.text
    finally:
        stripe_thread.stop()
