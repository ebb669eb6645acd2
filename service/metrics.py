"""Prometheus metrics of an API replica, through `prometheus_client`: request counts and latencies, the
memory and queue gauges, the forgetting monitor's latest point, and the process' own metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from service.engine import Engine
from worker.monitor import read_monitor
from worker.store import RedisStore

BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Any other method is one label, so a client cannot mint a series per request.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
disable_created_metrics()  # no `*_created` series beside every counter and histogram: noise for our dashboards


class RequestMetrics:
    """One registry per app (tests run several apps in one process), with the process collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("smft_http_requests", "HTTP requests by route and status",
                                ("method", "route", "status"), registry=self.registry)
        self.latency = Histogram("smft_http_request_duration_seconds", "HTTP request latency by route",
                                 ("method", "route"), buckets=BUCKETS, registry=self.registry)

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(code)).inc()
        self.latency.labels(method, route).observe(seconds)

    def watch(self, engine: Engine, store: RedisStore) -> ServiceCollector:
        collector = ServiceCollector(engine, store)
        self.registry.register(collector)
        return collector

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ServiceCollector(Collector):
    """Gauges read at scrape time: this replica's memory, the worker's queue, the monitor's latest point."""

    def __init__(self, engine: Engine, store: RedisStore) -> None:
        self.engine, self.store = engine, store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        latest = read_monitor(self.store, 1)["latest"] or {}
        gauges = {
            "smft_memory_version": (self.engine.version, "memory version this replica answers from"),
            "smft_published_version": (self.store.published_version(), "newest version the worker published"),
            "smft_queue_depth": (self.store.queue_depth(), "facts accepted and not yet learned or failed"),
            "smft_queue_age_seconds": (self.store.queue_age_s(), "how long the oldest fact not yet learned has "
                                                                 "waited"),
            "smft_retention_change": (latest.get("retention_change"), "retention-probe F1 relative to version 0"),
            "smft_probe_answered": (latest.get("probe_answered"),
                                    "share of the probe questions version 0 answered that are still answered"),
            "smft_nll_change": (latest.get("nll_change"), "held-out NLL relative to version 0"),
            "smft_recall": (latest.get("recall"), "recent facts with a question answered correctly"),
            "smft_slots_updated": (latest.get("slots_updated"), "value rows changed since version 0"),
        }
        for name, (value, help_text) in gauges.items():
            if value is not None:
                yield GaugeMetricFamily(name, help_text, value=float(value))
