"""Smoke test of the settings: driver choice, production secrets, list parsing."""

from __future__ import annotations

import os

import pytest

from payment_window.config import Settings
from payment_window.runner import StartupRefused, require_for


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test sets: no PW_ variable of the developer's shell leaks in."""
    for name in list(os.environ):
        if name.startswith("PW_"):
            monkeypatch.delenv(name)


def test_plain_postgresql_url_gets_the_asyncpg_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert Settings().database_url == "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def test_plain_sqlite_url_gets_the_aiosqlite_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_DATABASE_URL", "sqlite:////tmp/payment-window.db")
    settings = Settings()
    assert settings.database_url == "sqlite+aiosqlite:////tmp/payment-window.db"
    assert settings.is_sqlite


def production(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    monkeypatch.setenv("PW_ENV", "production")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("process", ["serve", "worker", "expire-due"])
def test_a_process_that_calls_stripe_will_not_start_without_the_key(
    monkeypatch: pytest.MonkeyPatch, process: str
) -> None:
    settings = production(monkeypatch, PW_JWT_SECRET="s3cret")
    with pytest.raises(StartupRefused, match="PW_STRIPE_API_KEY"):
        require_for(process, settings)


def test_the_api_will_not_start_in_production_without_a_token_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = production(monkeypatch, PW_STRIPE_API_KEY="sk_live_x")
    with pytest.raises(StartupRefused, match="PW_JWT_SECRET"):
        require_for("serve", settings)
    require_for("serve", production(monkeypatch, PW_JWT_JWKS_URL="https://idp.example/jwks"))


@pytest.mark.parametrize(
    ("process", "variables"),
    [
        ("relay", {}),
        ("reconcile", {}),
        ("migrate", {}),
        ("worker", {"PW_WORKER_LOOPS": "relay"}),  # a worker that only relays
    ],
)
def test_a_process_that_neither_calls_stripe_nor_checks_tokens_needs_neither_secret(
    monkeypatch: pytest.MonkeyPatch, process: str, variables: dict[str, str]
) -> None:
    require_for(process, production(monkeypatch, **variables))


def test_reminder_offsets_parse_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_REMINDER_OFFSETS_MINUTES", "720,60")
    assert Settings().reminder_offsets_minutes == [720, 60]
