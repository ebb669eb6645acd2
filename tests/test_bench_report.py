"""bench/report.py: the one percentile and the tables every benchmark prints."""

import math

from bench import report
from bench.addressing import AnswerOverlap
from bench.load import PhaseReport
from model.statistics import UsageReport


def test_percentile_is_nearest_rank_and_nan_without_values():
    assert report.percentile([3, 1, 2], 0.5) == 2 and report.percentile([1, 2, 3, 4], 0.99) == 4
    assert report.percentile([5.0], 0.95) == 5.0 and math.isnan(report.percentile([], 0.5))


def test_tables_have_a_header_a_rule_and_one_row_per_item():
    table = report.markdown_table(("a", "b"), [(1, "x"), (2, "")])
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| 1 | x |", "| 2 |  |"]
    usage = UsageReport(0.988, 0.191, 0.941)
    lines = report.usage_table({24: usage}, {24: UsageReport(0.855, 0.227, 0.865)}).splitlines()
    assert lines[0] == "| layer | addressing | slots read | reads by top 1% of slots | usage entropy |"
    assert lines[2:] == ["| 24 | raw hidden states | 85.5% | 22.7% | 0.865 |",
                         "| 24 | centred (version 0) | 98.8% | 19.1% | 0.941 |"]
    overlap = report.overlap_table({24: AnswerOverlap(0.5, 0.25, 0.125, 48)}).splitlines()
    assert overlap[2] == "| 24 | 0.500 | 0.250 | 0.125 |"
    phase = PhaseReport("queries", 8, 60.0, 100, 0, 900.0, 1500.0, 1.67, 0, 0, 0)
    assert report.load_table([phase]).splitlines()[2] == "| queries | 8 | 60 | 100 | 0 | 900 | 1500 | 1.67 | 0 | 0 |"
