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


def test_churn_counts_earlier_answers_lost_and_back_between_checkpoints():
    from bench.learn_forget import Checkpoint, MethodResult
    from bench.methods import MethodSpec

    def point(facts: int, missed: list[int], probe_missed: list[int]) -> Checkpoint:
        return Checkpoint(facts, 0.5, 0.5, 0.0, 0.0, 1.0, missed=missed, probe_missed=probe_missed)

    result = MethodResult(MethodSpec("sparse", 1.0), [
        point(4, [1], [0]),
        point(8, [0, 5, 6], [1, 2]),  # 0 lost, 1 back (5 and 6 were not taught at 4: neither); probe 1, 2 lost, 0 back
        point(12, [0, 5, 9], [1, 2])])  # 6 back; 9 is new
    lines = report.learn_forget_churn(result).splitlines()
    assert lines[2] == "| facts | earlier facts lost | earlier facts back | probe lost | probe back |"
    assert lines[4:] == ["| 4 -> 8 | 1 | 1 | 2 | 1 |", "| 8 -> 12 | 0 | 1 | 0 | 0 |"]
    assert report.learn_forget_churn(MethodResult(MethodSpec("sparse", 1.0), [point(4, [1], [0])])) is None
