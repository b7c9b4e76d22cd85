"""Settings for a store (and index) of each test's own, on the real servers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from devstripe.testing import RunningStripe
from motoserver import MotoServer
from pydantic import SecretStr
from redisserver import RedisServer
from sqlalchemy.ext.asyncio import AsyncEngine

from payment_window.adapters.migrate import migrate
from payment_window.adapters.store import create_engine
from payment_window.bootstrap import Container, bootstrap
from payment_window.config import Settings


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}", redis_url=None)
    migrate(settings)
    yield settings


@pytest.fixture
def pg_settings(postgres_url: str, pg_schema: str) -> Iterator[Settings]:
    settings = Settings(database_url=postgres_url, database_schema=pg_schema, redis_url=None)
    migrate(settings)
    yield settings


@pytest.fixture
def redis_settings(pg_settings: Settings, redis_url: str, redis_prefix: str) -> Settings:
    """PostgreSQL store plus the Redis window index, as in production."""
    return pg_settings.model_copy(update={"redis_url": redis_url, "redis_prefix": redis_prefix})


@pytest.fixture(params=["sql", "redis"])
def any_index_settings(request: pytest.FixtureRequest) -> Settings:
    """Each index adapter in turn: the SQL one (no Redis) and the Redis one."""
    name = "pg_settings" if request.param == "sql" else "redis_settings"
    settings: Settings = request.getfixturevalue(name)
    return settings


@pytest.fixture
async def engine(pg_settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[RunningStripe]:
    """The local Stripe-compatible server, one for the whole run."""
    with RunningStripe() as server:
        yield server


@pytest.fixture
def stripe(stripe_server: RunningStripe) -> Iterator[RunningStripe]:
    """The local Stripe server, emptied and healthy for this test."""
    stripe_server.start()
    stripe_server.reset()
    yield stripe_server
    stripe_server.start()
    stripe_server.clear_faults()


def with_stripe(settings: Settings, stripe: RunningStripe) -> Settings:
    """Settings whose Stripe SDK talks to the local server, retrying quickly."""
    return settings.model_copy(
        update={
            "stripe_api_key": SecretStr(stripe.api_key),
            "stripe_api_base": stripe.url,
            "stripe_max_network_retries": 2,
            "stripe_expire_rps": 100_000.0,
            "stripe_rps": 100_000.0,
        }
    )


@pytest.fixture
async def container(
    any_index_settings: Settings, stripe: RunningStripe
) -> AsyncIterator[Container]:
    """The wired service over each index adapter in turn, PostgreSQL and the local Stripe."""
    built = await bootstrap(with_stripe(any_index_settings, stripe))
    yield built
    await built.close()


def settings_env(settings: Settings) -> dict[str, str]:
    """This process's environment, with its own PW_ variables replaced by `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PW_")}
    return {**env, **settings.as_environment()}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to kill, pause and start again on the same port."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(redis_server: RedisServer) -> str:
    """The URL of a Redis server of this test's own, free to flush or kill."""
    return redis_server.url


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """moto in server mode, with credentials only it accepts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with MotoServer() as server:
        yield server
