"""A short bounded load test on the tiny model: concurrent queries with a teaching stream, zero errors."""

import pytest

from service.loadtest import LoadConfig, markdown, run_phase

pytestmark = pytest.mark.slow


def test_concurrent_queries_and_teaching_without_errors(module_service):
    _, api, _, _ = module_service
    quiet = run_phase(api.url, "queries", LoadConfig(clients=8, duration_s=4, max_new_tokens=8, teach_every_s=None))
    busy = run_phase(api.url, "queries + teaching",
                     LoadConfig(clients=8, duration_s=6, max_new_tokens=8, teach_every_s=0.5))
    print(markdown([quiet, busy]))
    for report in (quiet, busy):
        assert report.query_errors == 0 and report.teach_errors == 0, report.errors
        assert report.queries > 8 and report.p50_ms <= report.p99_ms
    assert busy.facts_sent >= 5 and busy.facts_learned >= 1
