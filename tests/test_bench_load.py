"""A short bounded load test on the tiny model: concurrent queries with a teaching stream, zero errors."""

import time

import pytest

from bench.load import LoadConfig, run_phase
from bench.report import load_table

pytestmark = pytest.mark.slow


def test_concurrent_queries_and_teaching_without_errors(module_service):
    _, api, _, _ = module_service
    before = api.client.get("/v1/status").json()
    quiet = run_phase(api.url, "queries", LoadConfig(clients=8, duration_s=4, max_new_tokens=8, teach_every_s=None))
    busy = run_phase(api.url, "queries + teaching",
                     LoadConfig(clients=8, duration_s=6, max_new_tokens=8, teach_every_s=0.5))
    print(load_table([quiet, busy]))
    for report in (quiet, busy):
        assert report.query_errors == 0 and report.teach_errors == 0, report.errors
        assert report.queries > 8 and report.p50_ms <= report.p99_ms
    assert busy.facts_sent >= 5
    # The worker shares the cores with eight query clients, so how many facts it learns within the phase
    # depends on the machine; that every fact taught under load is learned afterwards does not.
    deadline = time.monotonic() + 180
    while (status := api.client.get("/v1/status").json())["queue_depth"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status["queue_depth"] == 0 and status["dead_letters"] == before["dead_letters"]
    assert status["published_version"] > before["published_version"]
