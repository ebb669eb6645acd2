import math

import torch

from model.ranking import rank_slots, slot_reads
from model.statistics import SlotStats, usage_report


def stats_with(doc_freq, num_docs=10):
    df = torch.tensor(doc_freq)
    return SlotStats(num_docs=num_docs, doc_freq={0: df}, reads={0: df}, fingerprint="x")


def test_idf_formula():
    stats = stats_with([0, 4, 10])
    assert torch.allclose(stats.idf(0), torch.tensor([math.log(11), math.log(11 / 5), 0.0]))


def test_tfidf_prefers_rare_slots_over_frequent_common_ones():
    # slot 0: read 10x but by every background doc; slot 1: read 2x, never in background.
    reads = torch.tensor([10, 2, 1, 0])
    idf = stats_with([10, 0, 5, 0]).idf(0)
    assert rank_slots(reads, idf, top_t=2, mode="tfidf").tolist() == [1, 2]
    assert rank_slots(reads, idf, top_t=2, mode="tf").tolist() == [0, 1]
    assert sorted(rank_slots(reads, idf, top_t=1, mode="all").tolist()) == [0, 1, 2]


def test_slot_weight_reorders_and_weight_zero_excludes():
    reads, idf = torch.tensor([4, 3, 2, 0]), torch.ones(4)
    assert rank_slots(reads, idf, top_t=3).tolist() == [0, 1, 2]
    assert rank_slots(reads, idf, top_t=3, slot_weight=torch.tensor([0.25, 1.0, 1.0, 1.0])).tolist() == [1, 2, 0]
    assert rank_slots(reads, idf, top_t=3, slot_weight=torch.tensor([0.0, 1.0, 1.0, 1.0])).tolist() == [1, 2]
    assert rank_slots(reads, idf, top_t=3, mode="tf", slot_weight=torch.tensor([0.0, 0.0, 1.0, 1.0])).tolist() == [2]


def test_rank_slots_caps_at_top_t_and_ignores_unread():
    reads = slot_reads(torch.tensor([[3, 3, 5], [7, 3, 9]]), num_slots=12)
    assert reads[3] == 3 and reads.sum() == 6
    picked = rank_slots(reads, torch.ones(12), top_t=2)
    assert picked.tolist() == [3, 5] or (picked[0] == 3 and len(picked) == 2)


def test_usage_report():
    even = usage_report(torch.ones(200, dtype=torch.long))
    assert even.fraction_read == 1.0 and abs(even.entropy - 1.0) < 1e-9 and abs(even.top1pct_share - 0.01) < 1e-9
    skewed = usage_report(torch.tensor([100] + [0] * 199))
    assert skewed.fraction_read == 1 / 200 and skewed.top1pct_share == 1.0 and skewed.entropy == 0.0
