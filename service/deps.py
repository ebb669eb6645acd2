"""Dependencies of the routes, as Annotated aliases so tests can override them."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.engine import Engine
from service.ratelimit import RateLimiter
from service.settings import ApiSettings
from worker.store import RedisStore


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_store(request: Request) -> RedisStore:
    return request.app.state.engine.store


def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


# Probes stay open so orchestrators need no secret; everything else follows SMFT_PROTECT_READS.
# The dashboard page holds no data: its requests carry the read token from the page's fragment.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/dashboard"})


def require_token(request: Request, settings: Annotated[ApiSettings, Depends(get_settings)]) -> None:
    """Write endpoints: a bearer token, compared in constant time, when one is configured."""
    if not settings.api_token:
        return
    _check_bearer(request, settings.api_token)


def require_read_access(request: Request, settings: Annotated[ApiSettings, Depends(get_settings)]) -> None:
    """Every endpoint but the probes and the (data-free) dashboard page, when SMFT_PROTECT_READS is on."""
    if settings.protect_reads and settings.api_token and request.url.path not in OPEN_PATHS:
        _check_bearer(request, settings.api_token)


def client_of(request: Request) -> str:
    """Who a rate limit counts against: the peer address (a proxy in front should set its own limits)."""
    return request.client.host if request.client else "unknown"


def _check_bearer(request: Request, expected: str) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing or wrong bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[RedisStore, Depends(get_store)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]
WriteAccess = Depends(require_token)
