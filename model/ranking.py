"""TF-IDF slot selection: which value rows a training batch may change."""

from __future__ import annotations

import torch

from model.config import RankingMode


def slot_reads(slots: torch.Tensor, num_slots: int) -> torch.Tensor:
    """Read counts per slot from recorded lookups of any shape: [num_slots]."""
    return torch.bincount(slots.flatten().cpu(), minlength=num_slots)


def rank_slots(reads: torch.Tensor, idf: torch.Tensor, top_t: int, mode: RankingMode = "tfidf",
               slot_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Slot ids to train, best first.

    tf = the batch's reads of a slot over all its reads; tfidf weighs that by
    idf = log((D+1)/(df+1)), so slots that background text reads everywhere are protected.
    "tf" drops the IDF (ablation); "all" returns every slot the batch read. `slot_weight`
    ([num_slots]) scales the scores further, e.g. down for slots that earlier facts were stored in.
    """
    accessed = reads.nonzero().flatten()
    if mode == "all" or len(accessed) == 0:
        return accessed
    tf = reads[accessed].double() / reads.sum()
    score = tf * idf[accessed].double() if mode == "tfidf" else tf
    if slot_weight is not None:
        score = score * slot_weight[accessed].double()
    keep = score > 0  # a slot every background document reads (idf 0), or weighted 0, never trains
    accessed, score = accessed[keep], score[keep]
    order = score.argsort(descending=True, stable=True)[:top_t]
    return accessed[order]
