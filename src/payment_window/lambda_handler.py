"""AWS Lambda entry point for the EventBridge schedule: one expiry pass, with the store sweep."""

from __future__ import annotations

import asyncio
from typing import Any

from payment_window.config import Settings
from payment_window.logs import configure_logging
from payment_window.runner import expire_due_once, require_for


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """`payment_window.lambda_handler.handler`: returns what the pass did."""
    settings = Settings()
    configure_logging(settings)
    require_for("expire-due", settings)  # no Stripe key: the invocation fails, and says why
    report = asyncio.run(expire_due_once(settings))
    return report.as_dict()
