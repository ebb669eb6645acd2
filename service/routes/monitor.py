"""Forgetting monitor: JSON, on-demand evaluation, Prometheus metrics and the dashboard page."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.deps import StoreDep, WriteAccess
from worker.monitor import read_monitor

router = APIRouter(tags=["monitor"])


@router.get("/v1/monitor")
def monitor(store: StoreDep, limit: int = 200) -> dict:
    """The version-0 baseline, the latest evaluation and the history (oldest first)."""
    return read_monitor(store, max(1, min(limit, 1000)))


@router.post("/v1/monitor/evaluate", status_code=status.HTTP_202_ACCEPTED, dependencies=[WriteAccess])
def request_evaluation(store: StoreDep) -> dict:
    """Ask the worker to evaluate at its next opportunity (between batches)."""
    store.request_evaluation()
    return {"requested": True}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format (service/metrics.py)."""
    return Response(request.app.state.request_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


@cache
def _dashboard_html() -> str:
    return files("service").joinpath("static/dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> str:
    """Plots of retention, NLL, recall and updated rows over versions; self-contained (works offline)."""
    return _dashboard_html()
