"""No fake Stripe unless asked: `serve` needs PW_STRIPE_API_KEY or `--local-stripe`, and the
stand-in it starts listens on a port it bound itself. The real CLI in child processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import settings_env
from devstripe.server import DEFAULT_PORT
from pydantic import SecretStr

from payment_window.api.auth import mint_token
from payment_window.config import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(settings: Settings) -> dict[str, str]:
    env = settings_env(settings)
    for name in ("PW_STRIPE_API_KEY", "PW_STRIPE_API_BASE", "PW_STRIPE_WEBHOOK_SECRET"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["expire-due"]])
def test_without_a_key_or_the_flag_start_up_stops_naming_both(
    sqlite_settings: Settings, command: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "payment_window", *command],
        env=cli_env(sqlite_settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert "PW_STRIPE_API_KEY" in result.stderr
    assert "--local-stripe" in result.stderr


class Impostor:
    """Something else listening on the stand-in's old fixed port, counting who connects."""

    def __init__(self, sock: socket.socket) -> None:
        self.connections = 0
        self._sock = sock
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def impostor(unavailable: Callable[[str], NoReturn]) -> Iterator[Impostor]:
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", DEFAULT_PORT))
    except OSError:
        sock.close()
        unavailable(f"port {DEFAULT_PORT} is in use by another process here")
    sock.listen(16)
    listening = Impostor(sock)
    yield listening
    listening.close()


def test_local_stripe_serves_windows_on_a_stand_in_it_owns(
    sqlite_settings: Settings, impostor: Impostor
) -> None:
    settings = sqlite_settings.model_copy(
        update={"jwt_secret": SecretStr("cli-test-secret-0123456789abcdef0123456789")}
    )
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "payment_window", "serve", "--port", str(port), "--local-stripe"],
        env=cli_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{api}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert server.poll() is None, "serve --local-stripe exited"
                assert time.monotonic() < deadline, "serve --local-stripe did not come up"
                time.sleep(0.2)
        token = mint_token(settings, "shop", "service")
        opened = httpx.post(
            f"{api}/payments/checkout",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "auctionId": "auc-cli",
                "makerId": "mk-1",
                "buyerId": "buyer-1",
                "amount": 4200,
                "currency": "eur",
                "windowMinutes": 30,
            },
            timeout=30,
        )
        assert opened.status_code == 201, opened.text
        checkout_url = opened.json()["checkoutUrl"]
        stand_in_port = urlsplit(checkout_url).port
        assert stand_in_port not in (None, DEFAULT_PORT, port)
        page = httpx.get(checkout_url, timeout=10)
        assert page.status_code == 200 and "Pay 42.00 EUR" in page.text
    finally:
        server.terminate()
        server.wait(30)

    assert impostor.connections == 0
    # The stand-in lived in the serve process: with it gone, nothing answers on its port.
    with pytest.raises(httpx.ConnectError):
        httpx.get(checkout_url, timeout=5)
