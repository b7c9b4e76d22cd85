"""Settings: every `PW_` environment variable, validated once at start-up."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from payment_window.domain.policy import OnExpiry

DEFAULT_SQLITE = f"sqlite:///{Path.cwd() / 'payment-window.db'}"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Configuration read from `PW_`-prefixed environment variables."""

    model_config = SettingsConfigDict(env_prefix="PW_", extra="ignore", frozen=True)

    env: Environment = Field(
        Environment.DEVELOPMENT, description="`production` refuses to start without secrets"
    )
    database_url: str = Field(DEFAULT_SQLITE, description="SQLAlchemy or plain postgresql:// URL")
    database_schema: str | None = Field(
        None, description="PostgreSQL schema (search_path); tests use one each"
    )
    redis_url: str | None = Field(
        None, description="unset: the window index is served by the store"
    )
    redis_prefix: str = Field("", description="prefix for every Redis key; tests use one each")
    window_minutes: int = Field(1440, ge=1, le=7 * 24 * 60)
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str | None = Field(None, description="point the Stripe SDK at another server")
    stripe_webhook_secret: SecretStr | None = None
    stripe_max_network_retries: int = Field(2, ge=0, le=10)
    stripe_expire_rps: float = Field(
        20.0, gt=0, description="Stripe calls/s for expiry, all workers"
    )
    sns_maker_topic_arn: str | None = None
    sns_buyer_topic_arn: str | None = None
    auction_events_topic_arn: str | None = None
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    dogstatsd_host: str | None = None
    dogstatsd_port: int = 8125
    segment_write_key: SecretStr | None = None
    segment_host: str | None = None
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = Field(None, description="RS256 keys in production")
    jwt_audience: str | None = Field(None, description="required `aud` claim, when set")
    jwt_issuer: str | None = Field(None, description="required `iss` claim, when set")
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="where buyers reach this service (Stripe return URLs)"
    )
    default_max_extension_minutes: int = Field(1440, ge=0)
    default_makers_may_override: bool = False
    default_on_expiry: OnExpiry = OnExpiry.RELIST
    reminder_offsets_minutes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [720, 60]
    )
    expiry_batch_size: int = Field(200, ge=1, le=5000)
    claim_lease_seconds: float = Field(30.0, gt=0)
    worker_max_sleep_seconds: float = Field(2.0, gt=0)
    log_json: bool | None = Field(
        None, description="default: JSON in production, console otherwise"
    )

    @field_validator("database_url")
    @classmethod
    def _pick_driver(cls, url: str) -> str:
        """Accept plain URLs and choose the async driver the service runs on."""
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite:///", "sqlite+aiosqlite:///"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @field_validator("reminder_offsets_minutes", mode="before")
    @classmethod
    def _split_offsets(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            missing = [
                name
                for name, value in (
                    ("PW_STRIPE_API_KEY", self.stripe_api_key),
                    ("PW_JWT_SECRET", self.jwt_secret or self.jwt_jwks_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"production mode needs {', '.join(missing)}")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
