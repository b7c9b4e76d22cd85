"""A local, stateful Stripe-compatible server for Checkout Sessions (tests, demo, `make run`).

`create_app()` builds the ASGI app; `serve(host, port)` or
`python -m payment_window.devstripe --port N` runs it; `testing.RunningStripe` runs it in a thread.
"""

from payment_window.devstripe.app import DevStripeApp, create_app
from payment_window.devstripe.control import Fault, FaultKind
from payment_window.devstripe.server import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "DevStripeApp", "Fault", "FaultKind", "create_app", "serve"]
