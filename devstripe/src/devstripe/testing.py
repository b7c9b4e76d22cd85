"""`RunningStripe`: the local Stripe server on a free loopback port, steered from a test."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from devstripe.app import DevStripeApp, create_app
from devstripe.control import Fault, FaultKind
from devstripe.server import ServerThread, bind

TEST_API_KEY = "sk_test_devstripe"


class RunningStripe:
    """Start with `with RunningStripe() as stripe:`; state survives `stop()` / `start()`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        connect_webhook_url: str | None = None,
        connect_webhook_secret: str | None = None,
    ) -> None:
        self.app: DevStripeApp = create_app(
            clock,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            connect_webhook_url=connect_webhook_url,
            connect_webhook_secret=connect_webhook_secret,
        )
        self.api_key = TEST_API_KEY
        self._host = host
        self._port = port
        self._thread: ServerThread | None = None

    @property
    def url(self) -> str:
        """The base address to give the SDK (`base_addresses={"api": url}`)."""
        return f"http://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Self:
        """Listen again, on the same port once one was chosen."""
        if self._thread is None:
            sock = bind(self._host, self._port)
            self._port = sock.getsockname()[1]
            self._thread = ServerThread(self.app, sock)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: clients now get connection refused."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def inject(self, fault: Fault) -> None:
        self.app.faults.add(fault)

    def fail_next(self, n: int = 1, status: int = 500, *, path: str | None = None) -> None:
        """The next `n` Stripe calls (whose path contains `path`) answer `status`."""
        self.inject(Fault(FaultKind.ERROR, count=n, status=status, path=path))

    def fail_for(self, seconds: float, status: int = 500, *, path: str | None = None) -> None:
        self.inject(
            Fault(
                FaultKind.ERROR, count=None, until=time.time() + seconds, status=status, path=path
            )
        )

    def rate_limit_next(
        self, n: int = 1, *, lock_timeout: bool = False, path: str | None = None
    ) -> None:
        """429s: a real rate limit, or a lock timeout that Stripe tells clients to retry."""
        kind = FaultKind.LOCK_TIMEOUT if lock_timeout else FaultKind.RATE_LIMIT
        self.inject(Fault(kind, count=n, path=path))

    def delay_next(self, seconds: float, n: int = 1, *, path: str | None = None) -> None:
        self.inject(Fault(FaultKind.DELAY, count=n, delay=seconds, path=path))

    def drop_next(
        self, n: int = 1, *, after_processing: bool = False, path: str | None = None
    ) -> None:
        """Close the connection without an answer; `after_processing` loses only the answer."""
        self.inject(Fault(FaultKind.DROP, count=n, after=after_processing, path=path))

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def complete(self, session_id: str, paid: bool = True) -> dict[str, Any]:
        """The buyer finishes checkout; `paid=False` leaves a delayed payment pending."""
        return self.app.store.complete(session_id, "paid" if paid else "unpaid")

    def session(self, session_id: str) -> dict[str, Any]:
        """Peek at a session without counting a Stripe call."""
        return self.app.store.retrieve(session_id)

    def calls(self, path_suffix: str = "", method: str | None = None) -> int:
        """Stripe calls received whose path ends with `path_suffix`, faulted ones included."""
        return self.app.calls.count(path_suffix, method)

    def requests(self, path_contains: str = "") -> list[tuple[str, str, str | None]]:
        """Stripe calls received as `(method, path, Stripe-Account or None)`, oldest first."""
        return self.app.calls.requests(path_contains)

    def account_of(self, session_id: str) -> str | None:
        """The connected account a session lives on (None: the platform's)."""
        return self.app.store.account_of(session_id)

    def created_with(self, session_id: str) -> dict[str, Any]:
        """The parameters a session was created with."""
        return self.app.store.params_of(session_id)

    def call_times(self, path_suffix: str = "") -> list[float]:
        """When each Stripe call whose path ends with `path_suffix` arrived (epoch seconds)."""
        calls = self.app.calls.timeline()["calls"]
        return [at for at, key in calls if key.endswith(path_suffix)]

    def statuses(self) -> dict[int, int]:
        """How many Stripe calls were answered with each status."""
        return {int(k): n for k, n in self.app.calls.timeline()["statuses"].items()}

    def reset_calls(self) -> None:
        self.app.calls.reset()

    def reset(self) -> None:
        """Forget every session, fault, count and idempotent answer."""
        self.app.reset()
