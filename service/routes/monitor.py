"""Forgetting monitor: JSON, on-demand evaluation, Prometheus metrics and the dashboard page."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse

from service.deps import EngineDep, ProtocolDep, WriteAccess
from worker.monitor import read_monitor

router = APIRouter(tags=["monitor"])


@router.get("/v1/monitor")
def monitor(protocol: ProtocolDep, limit: int = 200) -> dict:
    """The version-0 baseline, the latest evaluation and the history (oldest first)."""
    return read_monitor(protocol, max(1, min(limit, 1000)))


@router.post("/v1/monitor/evaluate", status_code=status.HTTP_202_ACCEPTED, dependencies=[WriteAccess])
def request_evaluation(protocol: ProtocolDep) -> dict:
    """Ask the worker to evaluate at its next opportunity (between batches)."""
    protocol.r.set(protocol.keys.monitor_requested, 1)
    return {"requested": True}


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(engine: EngineDep, protocol: ProtocolDep, request: Request) -> str:
    """Prometheus text format."""
    latest = read_monitor(protocol, 1)["latest"] or {}
    gauges = {
        "smft_memory_version": (engine.version, "memory version this replica answers from"),
        "smft_published_version": (protocol.published_version(), "newest version the worker published"),
        "smft_queue_depth": (protocol.queue_depth(), "facts accepted and not yet learned or failed"),
        "smft_queue_age_seconds": (protocol.queue_age_s(), "how long the oldest fact not yet learned has waited"),
        "smft_retention_change": (latest.get("retention_change"), "retention-probe F1 relative to version 0"),
        "smft_probe_answered": (latest.get("probe_answered"),
                                "share of the probe questions version 0 answered that are still answered"),
        "smft_nll_change": (latest.get("nll_change"), "held-out NLL relative to version 0"),
        "smft_recall": (latest.get("recall"), "recent facts with a question answered correctly"),
        "smft_slots_updated": (latest.get("slots_updated"), "value rows changed since version 0"),
    }
    lines = []
    for name, (value, help_text) in gauges.items():
        if value is None:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {float(value):g}"]
    lines += request.app.state.request_metrics.prometheus()
    return "\n".join(lines) + "\n"


@cache
def _dashboard_html() -> str:
    return files("service").joinpath("static/dashboard.html").read_text(encoding="utf-8")


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> str:
    """Plots of retention, NLL, recall and updated rows over versions; self-contained (works offline)."""
    return _dashboard_html()
