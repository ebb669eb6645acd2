"""Dependencies of the routes, as Annotated aliases so tests can override them."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from service.engine import Engine
from service.settings import ApiSettings
from worker.protocol import Protocol


def get_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_protocol(request: Request) -> Protocol:
    return request.app.state.engine.protocol


def require_token(request: Request, settings: Annotated[ApiSettings, Depends(get_settings)]) -> None:
    """Write endpoints: a bearer token, compared in constant time, when one is configured."""
    if not settings.api_token:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_token.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "missing or wrong bearer token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ProtocolDep = Annotated[Protocol, Depends(get_protocol)]
WriteAccess = Depends(require_token)
