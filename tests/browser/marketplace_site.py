"""A marketplace's own site on another origin: its checkout page embeds <payment-window-timer>.

The page is what a marketplace writes (README, "three lines"): the module from the service,
the element, and a token provider that asks the marketplace's own back end for a fresh token.
The back end here mints buyer tokens the way the marketplace would (the service's HS256 secret).
"""

from __future__ import annotations

import html
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from payment_window.api.auth import mint_token
from payment_window.config import Settings

PAGE = """<!doctype html>
<html lang="{lang}">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="icon" href="data:,">
  <style>
    :root {{ color-scheme: {scheme}; font-family: system-ui, sans-serif; }}
    body {{ margin: 0; padding: 2rem; background: {page}; color: {ink}; }}
    main {{ max-width: 30rem; margin: 0 auto; }}
    payment-window-timer {{ --pw-timer-line: {line}; }}
    payment-window-timer::part(countdown) {{ letter-spacing: 0.01em; }}
  </style>
  <script type="module" src="{api}/static/payment-window-timer.js"></script>
</head>
<body>
  <main>
    <h1>{heading}</h1>
    <p>{lead}</p>
    <payment-window-timer session-id="{session}" api-base="{api}" locale="{locale}">
    </payment-window-timer>
  </main>
  <script type="module">
    const timer = document.querySelector('payment-window-timer');
    window.__changes = [];
    window.__errors = [];
    timer.addEventListener('payment-window:change', (e) => window.__changes.push(e.detail));
    timer.addEventListener('payment-window:error', (e) => window.__errors.push(e.detail));
    {token_line}
    timer.tokenProvider = async () => (await fetch('/token?session={session}')).text();
  </script>
</body>
</html>
"""

THEMES = {
    "light": {"scheme": "light", "page": "#ffffff", "ink": "#1f2933", "line": "#d9dee3"},
    "dark": {"scheme": "dark", "page": "#15191e", "ink": "#e8ecef", "line": "#3b434c"},
}
WORDS = {
    "en": ("Your auction win", "Pay for your item before the time runs out."),
    "de": ("Ihr Auktionsgewinn", "Bezahlen Sie Ihren Artikel, bevor die Zeit abläuft."),
}


class MarketplaceSite:
    """Serves `/checkout?…` (the embedding page) and `/token` (the marketplace's back end)."""

    def __init__(self, sock: socket.socket, api_base: str, settings: Settings) -> None:
        self.sock = sock
        self.api_base = api_base
        self.settings = settings
        self.token_requests: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                if url.path == "/checkout":
                    self._send(200, "text/html; charset=utf-8", site.page(**query))
                elif url.path == "/token":
                    site.token_requests.append(query.get("session", ""))
                    token = mint_token(site.settings, "buyer-1", "buyer")
                    self._send(200, "text/plain", token)
                else:
                    self._send(404, "text/plain", "not here")

            def _send(self, status: int, content_type: str, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = sock
        self.server.server_activate()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def url(self, session_id: str, **options: str) -> str:
        return f"{self.origin}/checkout?{urlencode({'session': session_id, **options})}"

    def page(
        self,
        session: str,
        locale: str = "en-GB",
        theme: str = "light",
        initial_token: str = "",
    ) -> str:
        lang = locale.split("-")[0]
        heading, lead = WORDS.get(lang, WORDS["en"])
        token_line = (
            f"timer.token = {json.dumps(initial_token)};" if initial_token else "// no token yet"
        )
        return PAGE.format(
            lang=html.escape(lang),
            title=html.escape(heading),
            heading=html.escape(heading),
            lead=html.escape(lead),
            api=html.escape(self.api_base),
            session=html.escape(session),
            locale=html.escape(locale),
            token_line=token_line,
            **THEMES[theme],
        )

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=5)
