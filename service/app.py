"""The FastAPI application: routes, errors, metrics and the engine's life cycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import errors
from service.deps import require_read_access
from service.engine import Engine
from service.metrics import RequestMetrics
from service.middleware import BodyLimit, BrowserGuard, RequestLog
from service.openai.serving import OpenAIServing
from service.ratelimit import RateLimiter
from service.routes import documents, facts, health, monitor, openai, query
from service.settings import ApiSettings
from worker.store import UNAVAILABLE, RedisStore

log = logging.getLogger(__name__)


def create_app(settings: ApiSettings) -> FastAPI:
    if not settings.redis_url:
        raise ValueError("the API needs SMFT_REDIS_URL (or use `smft serve`, which starts Redis)")
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = RedisStore.connect(redis_url, settings.namespace)
        engine = Engine(settings, store, settings.batch_window_ms, settings.max_batch, settings.max_generations,
                        settings.recase_names, settings.notes, settings.memory_scope == "noted",
                        settings.note_contrast, settings.note_grounding)
        try:
            store.ensure_group()  # the worker creates it too; an API may start while Redis is away
        except UNAVAILABLE as exc:
            log.warning("redis unavailable at start (%s); serving once it is back", exc)
        engine.start()
        app.state.settings, app.state.engine = settings, engine
        app.state.openai = OpenAIServing(engine, settings)
        app.state.rate_limiter = RateLimiter(store, settings.teach_rate_per_min, settings.teach_burst)
        collector = app.state.request_metrics.watch(engine, store)
        try:
            yield
        finally:
            app.state.request_metrics.registry.unregister(collector)
            engine.close()
            store.close()

    app = FastAPI(title="smft: continual learning with sparse memory finetuning", version="0.1.0",
                  lifespan=lifespan, dependencies=[Depends(require_read_access)])
    app.state.request_metrics = RequestMetrics()
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(BrowserGuard, allowed_hosts=settings.host_names())
    app.add_middleware(RequestLog, metrics=app.state.request_metrics)  # outermost: sees every response
    errors.install(app)
    for module in (facts, documents, query, health, monitor, openai):
        app.include_router(module.router)
    return app


def run_api(settings: ApiSettings) -> None:
    """Serve one API replica with uvicorn until SIGTERM or SIGINT."""
    import uvicorn

    if not settings.api_token:
        log.warning("no SMFT_API_TOKEN set: writes are open to anyone on this machine, so the API binds to "
                    "loopback only (%s:%d)", settings.host, settings.port)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)
