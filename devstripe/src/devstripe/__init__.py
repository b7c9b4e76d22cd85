"""A local, stateful Stripe-compatible server for Checkout Sessions (tests, demo, `make run`).

`create_app()` builds the ASGI app; `serve(host, port)` or
`python -m devstripe --port N` runs it; `testing.RunningStripe` runs it in a thread.
"""

from devstripe.app import DevStripeApp, create_app
from devstripe.control import Fault, FaultKind
from devstripe.server import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "DevStripeApp", "Fault", "FaultKind", "create_app", "serve"]
