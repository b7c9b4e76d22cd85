"""Bearer JWTs (PyJWT): HS256 with `PW_JWT_SECRET`, or RS256 from a JWKS URL in production.

Exactly one algorithm is accepted, and `exp`, `sub` and `role` are required (`makerId` too for
makers). Anything else — no token, `alg: none`, another algorithm, a bad signature, expired —
is a 401 with a `WWW-Authenticate: Bearer` challenge.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated, Any

import jwt
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from payment_window.api.errors import ApiError, Unauthorized
from payment_window.config import Environment, Settings
from payment_window.domain.access import Actor, Role

log = structlog.get_logger(__name__)

# Development only (production refuses to start without PW_JWT_SECRET or a JWKS URL): a fixed
# secret, so `payment-window demo` in one process mints tokens that `serve` in another accepts.
DEV_JWT_SECRET = "payment-window-development-secret-do-not-use-in-production"
DEFAULT_TTL = timedelta(hours=1)
ROLES = frozenset(role.value for role in Role)

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="A JWT with `sub`, `role` (admin, maker, buyer, service), `exp`, and `makerId` "
    "for makers.",
)


def hs256_secret(settings: Settings) -> str:
    """The HMAC secret: PW_JWT_SECRET, else (development only) the fixed development secret."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    if settings.env is Environment.DEVELOPMENT:
        return DEV_JWT_SECRET
    raise ValueError("PW_JWT_SECRET is not set")


def mint_token(
    settings: Settings,
    sub: str,
    role: Role | str,
    maker_id: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    **claims: Any,
) -> str:
    """An HS256 token the API accepts (for the CLI demo and tests); not for JWKS deployments."""
    if settings.jwt_jwks_url:
        raise ValueError("tokens for a JWKS (RS256) deployment come from its identity provider")
    payload: dict[str, Any] = {
        "sub": sub,
        "role": Role(role).value,
        "iat": int(time.time()),
        "exp": int(time.time() + ttl.total_seconds()),
    }
    if maker_id is not None:
        payload["makerId"] = maker_id
    if settings.jwt_audience:
        payload["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        payload["iss"] = settings.jwt_issuer
    payload.update(claims)
    return jwt.encode(payload, hs256_secret(settings), algorithm="HS256")


def actor_from_claims(claims: dict[str, Any]) -> Actor:
    subject, role, maker_id = claims.get("sub"), claims.get("role"), claims.get("makerId")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("the token's sub claim must be a non-empty string")
    if role not in ROLES:
        raise Unauthorized(f"the token's role must be one of {', '.join(sorted(ROLES))}")
    if role == Role.MAKER.value and (not isinstance(maker_id, str) or not maker_id):
        raise Unauthorized("a maker's token needs a makerId claim")
    return Actor(
        subject=subject,
        role=Role(role),
        maker_id=maker_id if isinstance(maker_id, str) else None,
    )


VERIFIED_TOKENS_KEPT = 10_000


class TokenVerifier:
    """Verifies bearer tokens with the one configured algorithm and key."""

    def __init__(self, settings: Settings) -> None:
        self._jwks: jwt.PyJWKClient | None = None
        self._secret: str | None = None
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._verified: dict[str, tuple[Actor, float]] = {}
        if settings.jwt_jwks_url:
            self.algorithm = "RS256"
            # Constructing the client fetches nothing; keys are fetched on first use and cached.
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300)
        else:
            self.algorithm = "HS256"
            self._secret = hs256_secret(settings)
            if settings.jwt_secret is None:
                log.warning(
                    "jwt_development_secret",
                    hint="PW_JWT_SECRET is unset: accepting tokens signed with the built-in "
                    "development secret; mint them with `payment-window demo` or "
                    "payment_window.api.auth.mint_token",
                )

    async def verify(self, token: str) -> Actor:
        """The token's actor; a token already verified is only checked for expiry again.

        A checkout page polls with one token for hours: verifying its signature once, not on
        every status read, takes the JWT work off the hot path. Nothing else about a token can
        change while this process runs (the key changes only with a restart).
        """
        remembered = self._verified.get(token)
        if remembered is not None:
            actor, expires = remembered
            if time.time() < expires:
                return actor
            del self._verified[token]
        actor, expires = await self._verify(token)
        if len(self._verified) >= VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (actor, expires)
        return actor

    async def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        if header.get("alg") != self.algorithm:
            raise Unauthorized(f"tokens must be signed with {self.algorithm}")
        key: Any = self._secret
        if self._jwks is not None:
            key = await self._signing_key(self._jwks, token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.MissingRequiredClaimError as missing:
            raise Unauthorized(f"the token lacks the {missing.claim} claim") from None
        except jwt.PyJWTError:
            raise Unauthorized("the token could not be verified") from None
        return actor_from_claims(claims), float(claims["exp"])

    @staticmethod
    async def _signing_key(client: jwt.PyJWKClient, token: str) -> Any:
        try:
            # PyJWKClient fetches over blocking urllib on a cache miss: keep it off the loop.
            signing_key = await run_in_threadpool(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            log.warning("jwks_unreachable", exc_info=True)
            raise ApiError(
                503,
                "auth_unavailable",
                "the token keys cannot be fetched right now",
                headers={"Retry-After": "5"},
            ) from None
        except jwt.PyJWTError:
            raise Unauthorized("the token's signing key is unknown") from None
        return signing_key.key


async def current_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Actor:
    """The verified caller, or 401."""
    if credentials is None:
        raise Unauthorized("a bearer token is required", invalid_token=False)
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(credentials.credentials)


CurrentActor = Annotated[Actor, Depends(current_actor)]

# How a route that skips the dependency (the hot status read) still documents its security.
BEARER_SECURITY: dict[str, Any] = {"security": [{"HTTPBearer": []}]}


async def actor_of(request: Request) -> Actor:
    """`current_actor` without FastAPI's dependency machinery, for the hot read path."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required", invalid_token=False)
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token.strip())
