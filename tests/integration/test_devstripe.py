"""The local Stripe server over plain HTTP: Stripe's shapes, idempotency, faults, controls."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from devstripe.hosted import HostedCheckoutApp
from devstripe.server import ServerThread, bind
from devstripe.testing import RunningStripe
from httpcapture import CaptureServer

SESSIONS = "/v1/checkout/sessions"


@pytest.fixture(scope="module")
def server() -> Iterator[RunningStripe]:
    with RunningStripe() as running:
        yield running


@pytest.fixture
def http(server: RunningStripe) -> Iterator[httpx.Client]:
    server.reset()
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        yield client


def create_form(**overrides: Any) -> dict[str, Any]:
    form = {
        "mode": "payment",
        "line_items[0][quantity]": "2",
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "500",
        "line_items[0][price_data][product_data][name]": "Lot 7",
        "expires_at": str(int(time.time()) + 3600),
        "metadata[sessionId]": "ps_1",
        # Required by the API version the stand-in's spec extract describes (2023-08-16).
        "success_url": "https://market.example/paid",
    }
    return {**form, **overrides}


def test_create_answers_a_real_shaped_session(http: httpx.Client) -> None:
    response = http.post(SESSIONS, data=create_form())

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "checkout.session"
    assert (body["status"], body["payment_status"], body["amount_total"]) == (
        "open",
        "unpaid",
        1000,
    )
    assert body["metadata"] == {"sessionId": "ps_1"}
    assert response.headers["request-id"].startswith("req_")


def test_missing_api_key_is_401(http: httpx.Client) -> None:
    response = httpx.post(f"{http.base_url}{SESSIONS}", data=create_form())

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_missing_required_param_is_named(http: httpx.Client) -> None:
    form = create_form()
    del form["line_items[0][price_data][currency]"]

    error = http.post(SESSIONS, data=form).json()["error"]

    assert error["param"] == "line_items[0][price_data][currency]"
    assert error["message"] == "Missing required param: line_items[0][price_data][currency]."


def test_unknown_session_is_resource_missing(http: httpx.Client) -> None:
    response = http.get(f"{SESSIONS}/cs_test_nope")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"
    assert response.json()["error"]["message"] == "No such checkout.session: 'cs_test_nope'"


@pytest.mark.parametrize("status", ["complete", "expired"])
def test_expiring_a_closed_session_is_stripes_exact_error(
    http: httpx.Client, server: RunningStripe, status: str
) -> None:
    session_id = http.post(SESSIONS, data=create_form()).json()["id"]
    if status == "complete":
        server.complete(session_id)
    else:
        http.post(f"{SESSIONS}/{session_id}/expire")

    response = http.post(f"{SESSIONS}/{session_id}/expire")

    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "message": 'Only Checkout Sessions with a status in ["open"] can be expired. '
            f"This Checkout Session has a status of `{status}`.",
        }
    }


def test_idempotency_key_replays_the_first_answer(http: httpx.Client) -> None:
    first = http.post(SESSIONS, data=create_form(), headers={"Idempotency-Key": "k1"})
    again = http.post(SESSIONS, data=create_form(), headers={"Idempotency-Key": "k1"})

    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


def idempotency_refusal(key: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "idempotency_error",
            "message": "Keys for idempotent requests can only be used with the same parameters "
            f"they were first used with. Try using a key other than '{key}' if you meant to "
            "execute a different request.",
        }
    }


def test_idempotency_key_with_other_params_is_refused_and_runs_nothing(
    http: httpx.Client, server: RunningStripe
) -> None:
    http.post(SESSIONS, data=create_form(), headers={"Idempotency-Key": "k1"})

    response = http.post(
        SESSIONS, data=create_form(mode="setup"), headers={"Idempotency-Key": "k1"}
    )

    assert response.status_code == 400
    assert response.json() == idempotency_refusal("k1")
    assert len(server.app.store.list(100)["data"]) == 1


def test_idempotency_key_on_another_endpoint_is_refused(
    http: httpx.Client, server: RunningStripe
) -> None:
    session_id = http.post(SESSIONS, data=create_form(), headers={"Idempotency-Key": "k1"})
    session_id = session_id.json()["id"]

    response = http.post(f"{SESSIONS}/{session_id}/expire", headers={"Idempotency-Key": "k1"})

    assert response.status_code == 400
    assert response.json() == idempotency_refusal("k1")
    assert server.session(session_id)["status"] == "open"


def test_a_refused_request_saves_nothing_under_its_key(http: httpx.Client) -> None:
    form = create_form()
    del form["mode"]
    refused = http.post(SESSIONS, data=form, headers={"Idempotency-Key": "k1"})

    created = http.post(SESSIONS, data=create_form(), headers={"Idempotency-Key": "k1"})

    assert refused.status_code == 400
    assert created.status_code == 200
    assert "idempotent-replayed" not in created.headers


def test_a_key_is_forgotten_after_24_hours() -> None:
    now = time.time()
    with RunningStripe(clock=lambda: now) as server, httpx.Client(base_url=server.url) as http:
        headers = {"Authorization": f"Bearer {server.api_key}", "Idempotency-Key": "k1"}
        first = http.post(
            SESSIONS, data=create_form(expires_at=str(int(now) + 3600)), headers=headers
        )
        now += 24 * 3600 + 1
        again = http.post(
            SESSIONS, data=create_form(expires_at=str(int(now) + 3600)), headers=headers
        )

    assert again.status_code == 200
    assert again.json()["id"] != first.json()["id"]
    assert "idempotent-replayed" not in again.headers


def test_an_expired_session_is_announced_by_a_signed_webhook() -> None:
    secret = "whsec_devstripe_test"
    with (
        CaptureServer() as endpoint,
        RunningStripe(webhook_url=f"{endpoint.url}/hook", webhook_secret=secret) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk_test_x"}) as http,
    ):
        session_id = http.post(SESSIONS, data=create_form()).json()["id"]
        http.post(f"{SESSIONS}/{session_id}/expire")
        deadline = time.monotonic() + 5
        while not endpoint.requests and time.monotonic() < deadline:
            time.sleep(0.02)

    (delivered,) = endpoint.requests
    event = stripe.Webhook.construct_event(
        delivered.body.decode(), delivered.headers["Stripe-Signature"], secret
    )
    assert event.type == "checkout.session.expired"
    assert (event.data.object["id"], event.data.object["status"]) == (session_id, "expired")


def test_completing_on_the_hosted_page_is_announced_by_a_signed_webhook() -> None:
    secret = "whsec_devstripe_test"
    with CaptureServer() as endpoint:
        stand_in = HostedCheckoutApp(f"{endpoint.url}/hook", secret)
        thread = ServerThread(stand_in, bind("127.0.0.1", 0))
        thread.start()
        try:
            created = httpx.post(
                f"{thread.url}{SESSIONS}",
                data=create_form(),
                headers={"Authorization": "Bearer sk_test_x"},
            )
            assert httpx.post(created.json()["url"]).status_code == 303
            deadline = time.monotonic() + 5
            while not endpoint.requests and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            thread.stop()

    (delivered,) = endpoint.requests
    event = stripe.Webhook.construct_event(
        delivered.body.decode(), delivered.headers["Stripe-Signature"], secret
    )
    assert event.type == "checkout.session.completed"
    assert event.data.object["payment_status"] == "paid"


def test_list_pages_newest_first(http: httpx.Client) -> None:
    ids = [http.post(SESSIONS, data=create_form()).json()["id"] for _ in range(3)]

    first = http.get(SESSIONS, params={"limit": 2}).json()
    rest = http.get(SESSIONS, params={"limit": 2, "starting_after": first["data"][-1]["id"]})

    assert [s["id"] for s in first["data"]] == ids[:0:-1]
    assert first["has_more"] is True
    assert [s["id"] for s in rest.json()["data"]] == ids[:1]
    assert rest.json()["has_more"] is False


def test_a_dropped_connection_gets_no_answer_at_all(
    http: httpx.Client, server: RunningStripe
) -> None:
    server.drop_next(1)

    with pytest.raises(httpx.RemoteProtocolError):
        http.get(SESSIONS)

    assert http.get(SESSIONS).status_code == 200


def test_rate_limit_and_lock_timeout_bodies(http: httpx.Client, server: RunningStripe) -> None:
    server.rate_limit_next(1)
    server.rate_limit_next(1, lock_timeout=True)

    limited, locked = http.get(SESSIONS), http.get(SESSIONS)

    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limit")
    assert "stripe-should-retry" not in limited.headers
    assert (locked.status_code, locked.json()["error"]["code"]) == (429, "lock_timeout")
    assert locked.headers["stripe-should-retry"] == "true"


def test_http_controls(http: httpx.Client) -> None:
    session_id = http.post(SESSIONS, data=create_form()).json()["id"]
    http.post("/_test/faults", json={"kind": "error", "status": 502, "count": 1, "path": "/v1/"})

    assert http.get(f"{SESSIONS}/{session_id}").status_code == 502
    completed = http.post(
        f"/_test/checkout/sessions/{session_id}/complete", json={"payment_status": "unpaid"}
    ).json()
    assert (completed["status"], completed["payment_status"]) == ("complete", "unpaid")
    assert http.get("/_test/calls").json() == {
        f"POST {SESSIONS}": 1,
        f"GET {SESSIONS}/{session_id}": 1,
    }
    http.post("/_test/faults", json={"kind": "error", "seconds": 30})
    assert http.get(SESSIONS).status_code == 500
    http.delete("/_test/faults")
    assert http.get(SESSIONS).status_code == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runs_from_the_command_line() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstripe",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/_test/health")
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert response.json() == {"ok": True}
    finally:
        process.terminate()
        process.wait(10)
