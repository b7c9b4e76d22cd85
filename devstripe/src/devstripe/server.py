"""Serving the app with uvicorn: in the foreground (CLI) or in a background thread (tests)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Sequence

import uvicorn

from devstripe.app import DevStripeApp, create_app

DEFAULT_PORT = 12111


def _config(app: DevStripeApp, log_level: str, http: str = "h11") -> uvicorn.Config:
    # h11 keeps the request cycle (and its transport) where the drop fault expects it;
    # benchmarks, which inject no faults, may ask for the faster httptools parser.
    return uvicorn.Config(
        app,
        http=http,
        lifespan="off",
        log_level=log_level,
        access_log=log_level == "info",
        timeout_graceful_shutdown=1,
        # The app stamps its own `Date`, by its own clock (tests give it a skewed one).
        date_header=False,
    )


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    app: DevStripeApp | None = None,
    log_level: str = "info",
    http: str = "h11",
) -> None:
    """Serve until interrupted."""
    config = _config(app or create_app(), log_level, http)
    config.host, config.port = host, port
    uvicorn.Server(config).run()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one. Reusable at once after a stop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class ServerThread:
    """One uvicorn server on `sock`, running in a daemon thread until `stop`."""

    def __init__(self, app: DevStripeApp, sock: socket.socket, log_level: str = "warning") -> None:
        self._server = uvicorn.Server(_config(app, log_level))
        self._sock = sock
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            daemon=True,
            name="devstripe",
        )

    @property
    def url(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local Stripe server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m devstripe [--host H] [--port N]`."""
    parser = argparse.ArgumentParser(
        prog="python -m devstripe",
        description="A local, stateful Stripe look-alike for Checkout Sessions.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--http", choices=("h11", "httptools"), default="h11", help="httptools: faster, no drops"
    )
    args = parser.parse_args(argv)
    serve(args.host, args.port, log_level=args.log_level, http=args.http)
