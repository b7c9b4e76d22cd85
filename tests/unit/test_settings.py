"""Smoke test of the settings: driver choice, production secrets, list parsing."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from payment_window.config import Settings


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


def test_production_without_stripe_key_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_ENV", "production")
    monkeypatch.setenv("PW_JWT_SECRET", "s3cret")
    with pytest.raises(ValidationError, match="PW_STRIPE_API_KEY"):
        Settings()


def test_reminder_offsets_parse_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PW_REMINDER_OFFSETS_MINUTES", "720,60")
    assert Settings().reminder_offsets_minutes == [720, 60]
