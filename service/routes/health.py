"""Liveness, readiness and a status summary."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.deps import EngineDep, SettingsDep, StoreDep
from service.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(engine: EngineDep, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Model loaded, Redis reachable, memory caught up with the worker."""
    problems = []
    published = -1
    try:
        store.ping()
        published = store.published_version()
    except Exception as exc:
        problems.append(f"redis unreachable: {exc}")
    if not engine.loaded:
        problems.append(f"model not loaded ({engine.error or 'loading'})")
    elif engine.error:  # e.g. Redis serves a new deployment whose version 0 is not published yet
        problems.append(f"memory not following the worker: {engine.error}")
    elif published - engine.version > settings.ready_lag_versions:
        problems.append(f"memory at version {engine.version}, worker published {published}")
    body = {"ready": not problems, "memory_version": engine.version, "published_version": published,
            "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get("/v1/status", response_model=Status)
def status_summary(engine: EngineDep, store: StoreDep, settings: SettingsDep) -> Status:
    return Status(model=settings.model, memory_version=engine.version, memory_applied_at=engine.applied_at,
                  published_version=store.published_version(), snapshot_version=store.snapshot_version(),
                  queue_depth=store.queue_depth(), queue_age_s=store.queue_age_s(),
                  dead_letters=store.dead_letter_count())
