"""The FastAPI application: routes, error format, and the engine's life cycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.deps import require_read_access
from service.engine import Engine
from service.middleware import BodyLimit, RequestLog, RequestMetrics
from service.ratelimit import RateLimiter
from service.routes import facts, health, monitor, openai, query
from service.settings import ApiSettings

log = logging.getLogger(__name__)


def error_body(message: str, code: int, **extra) -> dict:
    """`detail` for this API's clients, `error` in the shape OpenAI's clients read."""
    kind = "invalid_request_error" if code < 500 else "server_error"
    return {"detail": message, "error": {"message": message, "type": kind, "code": code}, **extra}


def _describe(error: dict) -> str:
    loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body",)) or "body"
    return f"{loc}: {error.get('msg', 'invalid')}"


def create_app(settings: ApiSettings) -> FastAPI:
    if not settings.redis_url:
        raise ValueError("the API needs SMFT_REDIS_URL (or use `smft serve`, which starts Redis)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis.Redis.from_url(settings.redis_url, health_check_interval=30)
        engine = Engine(settings, client, settings.batch_window_ms, settings.max_batch)
        try:
            engine.protocol.ensure_group()  # the worker creates it too; an API may start while Redis is away
        except redis.ConnectionError as exc:
            log.warning("redis unavailable at start (%s); serving once it is back", exc)
        engine.start()
        app.state.settings, app.state.engine = settings, engine
        app.state.rate_limiter = RateLimiter(client, engine.protocol.keys, settings.teach_rate_per_min,
                                             settings.teach_burst)
        try:
            yield
        finally:
            engine.close()
            client.close()

    app = FastAPI(title="smft: continual learning with sparse memory finetuning", version="0.1.0",
                  lifespan=lifespan, dependencies=[Depends(require_read_access)])
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLog, metrics=app.state.request_metrics)  # outermost: sees every response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        message = "; ".join(_describe(e) for e in errors[:5])
        return JSONResponse(error_body(message, 422, errors=[
            {"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors]), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message, code = str(exc.detail), exc.status_code
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's "error parsing the body" says no more
            bad = exc.__cause__
            message, code = f"body: not valid UTF-8 (byte 0x{bad.object[bad.start]:02x} at offset {bad.start})", 422
        return JSONResponse(error_body(message, code), status_code=code, headers=exc.headers)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # Nothing was acknowledged: the client may retry the same request (with its client_id).
        message = f"redis unavailable ({type(exc).__name__}); nothing was stored, retry shortly"
        return JSONResponse(error_body(message, 503), status_code=503, headers={"Retry-After": "1"})

    for module in (facts, query, health, monitor, openai):
        app.include_router(module.router)
    return app
