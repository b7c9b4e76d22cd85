"""payment-window: enforces payment windows on Stripe Checkout sessions."""

from importlib.metadata import PackageNotFoundError, version

try:
    # pyproject.toml holds the version; the installed distribution's metadata carries it here.
    __version__ = version("payment-window")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
