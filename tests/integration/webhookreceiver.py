"""`WebhookReceiver`: a loopback HTTP server standing in for a marketplace's webhook endpoint.

It records every POST (headers, body, the status it answered) and answers what the test says:
`statuses` is a queue of answers for the next requests (then `status`), `delay` holds each
answer back that many seconds (a slow receiver).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class WebhookReceiver:
    def __init__(self, status: int = 204, delay: float = 0.0) -> None:
        self.status = status
        self.statuses: deque[int] = deque()
        self.delay = delay
        self.received: list[Received] = []
        self.arrived = 0  # requests that reached it, answered or not yet
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/payment-window"

    def delivered(self) -> list[Received]:
        """The requests answered 2xx: what the receiver accepted."""
        with self._lock:
            return [r for r in self.received if 200 <= r.status < 300]

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.arrived += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    status = receiver.statuses.popleft() if receiver.statuses else receiver.status
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(headers, body, status))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up waiting (its timeout)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
