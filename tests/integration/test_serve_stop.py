"""`payment-window serve` stops on SIGTERM while a checkout page holds a live event stream: the
stream gets a last `reconnect` event and ends, and the process exits 0 within seconds (an ECS
task's stop timeout is 30 s), instead of waiting for the stream's token to expire."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from api_harness import api_settings
from conftest import settings_env
from devstripe.testing import RunningStripe
from liveserver import free_port, wait_until_ready

from payment_window.api.auth import mint_token
from payment_window.config import Settings

pytestmark = pytest.mark.slow

STOPPED_WITHIN = 15.0


def test_serve_ends_live_streams_with_reconnect_and_exits_0_on_sigterm(
    pg_settings: Settings, stripe: RunningStripe, tmp_path: Path
) -> None:
    settings = api_settings(pg_settings, stripe, serve_loops="worker,relay")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "payment_window", "serve", "--port", str(port)],
        env=settings_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        wait_until_ready(url, timeout=60, process=process)
        service = {"Authorization": f"Bearer {mint_token(settings, 'shop', 'service')}"}
        opened = httpx.post(
            f"{url}/payments/checkout",
            headers=service,
            json={"auctionId": "auc-stop", "makerId": "mk-1", "buyerId": "by-1",
                  "amount": 900, "currency": "usd"},
            timeout=30,
        )  # fmt: skip
        assert opened.status_code == 201, opened.text
        buyer = {"Authorization": f"Bearer {mint_token(settings, 'by-1', 'buyer')}"}
        lines: list[str] = []
        connected = threading.Event()
        ended = threading.Event()

        def read_stream() -> None:
            events = f"{url}/payments/checkout/{opened.json()['sessionId']}/events"
            with httpx.stream("GET", events, headers=buyer, timeout=60) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    lines.append(line)
                    if line.startswith("event: status"):
                        connected.set()
            ended.set()

        reader = threading.Thread(target=read_stream, daemon=True)
        reader.start()
        assert connected.wait(20), lines

        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=STOPPED_WITHIN + 5)
        took = time.monotonic() - stopped
        assert ended.wait(5), lines
        assert "event: reconnect" in lines, lines
        assert code == 0, log.read_text()[-3000:]
        assert took < STOPPED_WITHIN, took
        print(f"serve exited {code} {took:.2f} s after SIGTERM with a stream open")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
