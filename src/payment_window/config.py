"""Settings: every `PW_` environment variable, validated once at start-up."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
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
        Environment.DEVELOPMENT,
        description="`production`: `serve` refuses to start without a JWT secret (or JWKS URL); "
        "`serve`, `worker` and `expire-due` refuse without a Stripe key in any mode",
    )
    database_url: str = Field(
        DEFAULT_SQLITE,
        description="the store: a SQLAlchemy URL, or a plain `postgresql://user@host:port/db` "
        "(the driver is picked for it)",
        json_schema_extra={
            "shown_default": "`payment-window.db` (SQLite) in the working directory"
        },
    )
    database_schema: str | None = Field(
        None, description="PostgreSQL schema (search_path); tests use one each"
    )
    redis_url: str | None = Field(
        None, description="the window index (Redis); unset: served by the store"
    )
    redis_prefix: str = Field("", description="prefix for every Redis key; tests use one each")
    window_minutes: int = Field(
        1440, ge=1, le=7 * 24 * 60, description="length of a new payment window"
    )
    stripe_api_key: SecretStr | None = Field(
        None,
        description="Stripe secret key; `serve`, `worker` and `expire-due` refuse to start "
        "without it, unless `serve --local-stripe` (development) asks for the stand-in",
    )
    stripe_api_base: str | None = Field(
        None, description="another Stripe-compatible server for the Stripe SDK (tests)"
    )
    stripe_webhook_secret: SecretStr | None = Field(
        None,
        description="verifies the Stripe-Signature of webhooks; comma-separated for several "
        "endpoints (platform, Connect) and during a secret roll",
    )
    stripe_max_network_retries: int = Field(
        2, ge=0, le=10, description="the Stripe SDK's own retries of failed calls"
    )
    stripe_rps: float = Field(
        20.0,
        gt=0,
        description="Stripe calls/s of the whole deployment together (shared through Redis); "
        "buyer-facing calls first",
    )
    stripe_expire_rps: float | None = Field(
        None,
        gt=0,
        description="caps the background share (expiry, re-checks) of PW_STRIPE_RPS; unset: "
        "whatever buyer-facing calls leave",
    )
    dev_clock_offset_seconds: float = Field(
        0.0,
        description="development and tests only (refused in production): shift this process's "
        "clock, to try skewed hosts",
    )
    sns_maker_topic_arn: str | None = Field(None, description="SNS topic for maker notices")
    sns_buyer_topic_arn: str | None = Field(
        None, description="SNS topic for buyer notices (and reminders)"
    )
    auction_events_topic_arn: str | None = Field(
        None, description="SNS topic for auction follow-ups and operations alerts"
    )
    aws_endpoint_url: str | None = Field(None, description="another AWS endpoint (moto in tests)")
    aws_region: str = Field("us-east-1", description="AWS region of the SNS topics")
    dogstatsd_host: str | None = Field(None, description="DogStatsD agent; unset: no metrics")
    dogstatsd_port: int = Field(8125, description="DogStatsD agent port")
    segment_write_key: SecretStr | None = Field(
        None, description="Segment write key; unset: analytics wait in the outbox"
    )
    segment_host: str | None = Field(None, description="another Segment API host")
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS256 secret for bearer tokens; unset in development: generated once into "
        "`payment-window.jwt-secret` (mode 0600) beside the SQLite file, shared by `serve` and "
        "`demo`",
    )
    jwt_jwks_url: str | None = Field(
        None, description="RS256 keys of an identity provider (production)"
    )
    jwt_audience: str | None = Field(None, description="required `aud` claim, when set")
    jwt_issuer: str | None = Field(None, description="required `iss` claim, when set")
    jwt_max_ttl_seconds: int = Field(
        86400,
        ge=60,
        description="tokens whose exp lies further than this after their iat (or after now) "
        "are refused; tokens without iat are refused",
    )
    sse_max_streams_per_subject: int = Field(
        5,
        ge=1,
        description="live event streams one token subject may hold open at once, per process "
        "(429 beyond)",
    )
    api_docs: bool = Field(
        True,
        description="serve `/docs` (Swagger UI from the package) and `/openapi.json`; "
        "false: both 404",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000", description="where buyers reach this service (Stripe return URLs)"
    )
    default_max_extension_minutes: int = Field(
        1440, ge=0, description="policy for makers without their own: total extension allowed"
    )
    default_makers_may_override: bool = Field(
        False, description="policy for makers without their own: may they extend/terminate"
    )
    default_on_expiry: OnExpiry = Field(
        OnExpiry.RELIST,
        description="policy for makers without their own: `relist`, `notify_maker` or "
        "`offer_next_bidder`",
    )
    reminder_offsets_minutes: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [720, 60],
        description="buyer reminders, minutes before the deadline (comma-separated)",
    )
    expiry_batch_size: int = Field(
        200, ge=1, le=5000, description="most windows one expiry worker claims at a time"
    )
    claim_lease_seconds: float = Field(
        6.0,
        gt=0,
        description="a crashed worker's claims come back after this (live ones are renewed)",
    )
    confirmation_recheck_minutes: float = Field(
        60,
        gt=0,
        le=7 * 24 * 60,
        description="ask Stripe again about a payment awaiting confirmation after this long",
    )
    worker_max_sleep_seconds: float = Field(
        2.0, gt=0, description="longest a worker sleeps between looks at the index"
    )
    serve_loops: str | None = Field(
        None,
        description='loops `serve` runs in-process, comma-separated: worker,relay ("" none); '
        "unset: both on the embedded default (SQLite without Redis), none otherwise",
    )
    worker_loops: str | None = Field(
        None, description="loops `worker` runs: worker,relay; unset: the expiry worker only"
    )
    # Outgoing webhooks (Standard Webhooks): a third outbox sink beside SNS and Segment.
    webhook_endpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="outgoing webhook endpoints, comma-separated https:// URLs (http:// only to "
        "a loopback address in development); unset: no webhooks",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="whsec_… secret that signs outgoing webhooks; several comma-separated "
        "during a roll (each delivery carries a signature per secret)",
    )
    webhook_events: str | None = Field(
        None,
        description="message types sent to webhooks, comma-separated (docs/events.md); "
        "unset or `all`: every one",
    )
    # The store's own faults: bounded waits on a store that is down, failing over or frozen
    # (each answered 503 with Retry-After), and how long each table keeps what.
    database_connect_timeout_seconds: float = Field(
        3.0, gt=0, description="longest wait for a new store connection"
    )
    database_statement_timeout_seconds: float = Field(
        5.0,
        gt=0,
        description="longest wait for one statement's answer (also the server's statement_timeout)",
    )
    database_pool_timeout_seconds: float = Field(
        3.0, gt=0, description="longest wait for a free connection from the pool"
    )
    migration_lock_timeout_seconds: float = Field(
        3.0, gt=0, description="a migration waits this long for a table lock, then retries"
    )
    outbox_retention_hours: float = Field(
        168, gt=0, description="delivered or cancelled outbox rows are deleted after this"
    )
    webhook_event_retention_days: float = Field(
        30, gt=0, description="ids of processed Stripe events are kept this long (Stripe: 3 days)"
    )
    log_json: bool | None = Field(
        None, description="JSON log lines (true) or console lines; unset: JSON in production"
    )
    # The buyer-facing pages and the <payment-window-timer> element (issue 23).
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins (comma-separated, e.g. https://shop.example) whose pages may call "
        "the status read, the live events and the override endpoint, and load the timer "
        "element; unset: none. Never a wildcard",
    )
    support_contact: str | None = Field(
        None,
        description="shown on closed and awaiting checkout pages: a URL (https://…) or an "
        "e-mail address; unset: the page refers buyers to the marketplace",
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

    @model_validator(mode="after")
    def _no_shifted_clock_in_production(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.dev_clock_offset_seconds:
            raise ValueError("PW_DEV_CLOCK_OFFSET_SECONDS is for development and tests only")
        return self

    @field_validator("serve_loops", "worker_loops")
    @classmethod
    def _known_loops(cls, value: str | None) -> str | None:
        known = {"worker", "relay"}
        if value is not None:
            unknown = {part.strip() for part in value.split(",") if part.strip()} - known
            if unknown:
                raise ValueError(f"unknown loops {sorted(unknown)}; known: worker, relay")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for origin in value:
                if not re.fullmatch(r"https?://[^/\s*]+", str(origin)):
                    raise ValueError(
                        f"{origin!r} is not an origin: scheme://host[:port], no path, no wildcard"
                    )
            return [str(origin).lower() for origin in value]
        return value

    @field_validator("webhook_endpoints", mode="before")
    @classmethod
    def _split_endpoints(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("reminder_offsets_minutes", mode="before")
    @classmethod
    def _split_offsets(cls, value: object) -> object:
        if isinstance(value, str):
            return [int(part) for part in value.split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value

    def as_environment(self) -> dict[str, str]:
        """The `PW_` variables that give a child process (a worker, a server) these settings."""
        variables: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list):
                value = ",".join(str(item) for item in value)
            elif isinstance(value, StrEnum):
                value = value.value
            variables[f"PW_{name.upper()}"] = str(value)
        return variables

    @property
    def webhook_secrets(self) -> list[str]:
        """The signing secrets of `PW_WEBHOOK_SECRET`, in order."""
        if self.webhook_secret is None:
            return []
        text = self.webhook_secret.get_secret_value()
        return [part.strip() for part in text.split(",") if part.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def data_dir(self) -> Path:
        """The SQLite database's folder (development files live beside it), else the cwd."""
        _, _, path = self.database_url.partition(":///")
        if self.is_sqlite and path and not path.startswith(":memory:"):
            return Path(path.split("?", 1)[0]).parent
        return Path.cwd()


def shown_default(field: FieldInfo) -> str:
    """A setting's default as `--help` and README's settings table show it."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("shown_default"), str):
        return str(extra["shown_default"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "unset"
    if isinstance(value, float):
        return f"{value:g}"
    return str(getattr(value, "value", value))
