"""Schemathesis over the published OpenAPI document: no generated request may cause a 5xx.

The app runs in-process (ASGI) over a PostgreSQL schema of its own and the local Stripe server,
and every case carries an admin token so it reaches the handlers rather than stopping at 401.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import NoReturn

import pytest
import schemathesis
from api_harness import JWT_SECRET, api_settings
from devstripe.testing import RunningStripe
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from payment_window.api.app import create_app
from payment_window.api.auth import mint_token
from payment_window.config import Settings

EXAMPLES_PER_OPERATION = 30
CASES: dict[str, int] = {}
STATUSES: dict[str, Counter[int]] = {}

# The document is read from a throwaway instance of the app: its lifespan builds a container
# but nothing connects until a request needs the store, and none is sent to it but this one.
_DOCUMENT_SETTINGS = Settings(
    database_url="sqlite:///:memory:",
    redis_url=None,
    stripe_api_key=SecretStr("sk_test_schema_only"),
    jwt_secret=SecretStr(JWT_SECRET),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_DOCUMENT_SETTINGS))


@pytest.fixture
def fuzz_app(pg_settings: Settings, stripe: RunningStripe) -> Iterator[tuple[FastAPI, str]]:
    """The real app over this test's PostgreSQL schema and the local Stripe, plus an admin token.

    Its lifespan starts on schemathesis's own event loop with the first case, and every later
    case runs on that loop too.
    """
    app_settings = api_settings(pg_settings, stripe)
    yield create_app(app_settings), mint_token(app_settings, "fuzzer", "admin")
    asgi.shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_generated_request_is_a_server_error(
    case: schemathesis.Case, fuzz_app: tuple[FastAPI, str]
) -> None:
    app, token = fuzz_app
    key = f"{case.operation.method.upper()} {case.operation.path}"
    response = case.call_and_validate(
        app=app, headers={"Authorization": f"Bearer {token}"}, checks=[not_a_server_error]
    )
    CASES[key] = CASES.get(key, 0) + 1
    STATUSES.setdefault(key, Counter())[response.status_code] += 1


def test_zz_report_case_count(
    capsys: pytest.CaptureFixture[str], unavailable: Callable[[str], NoReturn]
) -> None:
    """Runs last in this module: how many cases the fuzzing above sent."""
    if not CASES:
        unavailable("the fuzz tests did not run in this session")
    with capsys.disabled():
        print(f"\nschemathesis: {sum(CASES.values())} cases over {len(CASES)} operations")
        for operation, count in sorted(CASES.items()):
            statuses = ", ".join(f"{s}: {n}" for s, n in sorted(STATUSES[operation].items()))
            print(f"  {count:4d}  {operation}  ({statuses})")
    assert len(CASES) >= 6
