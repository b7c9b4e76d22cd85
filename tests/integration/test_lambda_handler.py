"""The EventBridge schedule's entry point: one pass, configured from the environment."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from conftest import settings_env, with_stripe
from devstripe.testing import RunningStripe
from seeding import seed_windows

from payment_window.bootstrap import bootstrap
from payment_window.config import Settings
from payment_window.lambda_handler import handler


def test_the_lambda_handler_runs_one_pass_and_reports_it(
    redis_settings: Settings, stripe: RunningStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_stripe(redis_settings, stripe)

    async def seed() -> None:
        container = await bootstrap(settings)
        try:
            await seed_windows(container, stripe, 3)
        finally:
            await container.close()

    asyncio.run(seed())
    for name, value in settings_env(settings).items():
        if name.startswith("PW_"):
            monkeypatch.setenv(name, value)

    try:
        result = handler({"source": "aws.scheduler"}, None)
        again = handler({"source": "aws.scheduler"}, None)
    finally:
        # The handler configures logging for the process; later tests configure their own.
        structlog.reset_defaults()

    assert result["expired"] == 3
    assert again["claimed"] == 0
