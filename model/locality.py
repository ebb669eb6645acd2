"""Locality: keeping what the rows a batch trains add to other text near zero.

TF-IDF picks rows that background text reads rarely, not never; where other text does read them,
training writes the fact into that text's hidden states too. Knowledge editors (ROME, MEMIT) hold a
set of other inputs' outputs fixed while they write. For a memory layer that is cheap: which slots a
position reads, and with what weight, depends on the layers below and on the token ids, never on the
values. So the reads of other texts are recorded: the background corpus' once (inside the chat
template, where its documents were replies), a batch's neighbours' (its own examples about other
subjects, model/neighbours.py) where their answers begin, once per batch. At every step the change
the trained rows make at the positions that read them is a weighted sum of the rows' deltas: its mean
squared norm, times `SparseConfig.keep_weight`, is added to the loss, each text's apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.batching import pad_rows
from model.lm import MemoryLM


@dataclass(frozen=True)
class OtherReads:
    """Per memory layer, the slots ([P, heads, k]) every recorded position read, and their weights."""

    slots: Mapping[int, torch.Tensor]
    weights: Mapping[int, torch.Tensor]

    def reading(self, selected: Mapping[int, torch.Tensor]) -> OtherReads:
        """Only the positions that read at least one selected slot: the only ones training can change."""
        slots, weights = {}, {}
        for idx, chosen in selected.items():
            hit = torch.isin(self.slots[idx], chosen.to(self.slots[idx].device)).flatten(1).any(1)
            slots[idx], weights[idx] = self.slots[idx][hit], self.weights[idx][hit]
        return OtherReads(slots, weights)

    def positions(self, idx: int) -> int:
        return len(self.slots[idx])


@torch.no_grad()
def record_reads(lm: MemoryLM, texts: Sequence[str], max_tokens: int = 128, batch_size: int = 16) -> OtherReads:
    """The memory reads at every position of `texts` (each cut to `max_tokens` tokens)."""
    slots: dict[int, list[torch.Tensor]] = {idx: [] for idx in lm.memories}
    weights: dict[int, list[torch.Tensor]] = {idx: [] for idx in lm.memories}
    for start in range(0, len(texts), batch_size):
        rows = [lm.encode(t)[:max_tokens] for t in texts[start:start + batch_size]]
        ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
        with lm.reads() as reads:
            lm.run_to_memories(ids.to(lm.device), mask.to(lm.device))
        real = mask.bool()
        for idx, chunks in reads.items():
            read, weight = chunks[0]
            slots[idx].append(read[real.to(read.device)].cpu())
            weights[idx].append(weight[real.to(weight.device)].cpu())
    return OtherReads({i: torch.cat(s) for i, s in slots.items()}, {i: torch.cat(w) for i, w in weights.items()})


def change_penalty(reads: OtherReads, idx: int, row_of_slot: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean over the recorded positions of |what the trained rows add there|^2 for one memory layer.

    `row_of_slot` maps a slot to its row in `rows` (the trainable deltas), or to len(rows) when it is not trained,
    as ProductKeyMemory.attach_trainable_rows does."""
    slots = reads.slots[idx].to(rows.device)
    if not len(slots):
        return rows.sum() * 0.0
    heads, k = slots.shape[1:]
    padded = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])
    added = F.embedding_bag(row_of_slot[slots.reshape(-1, k)], padded,
                            per_sample_weights=reads.weights[idx].to(rows).reshape(-1, k), mode="sum")
    return added.view(len(slots), heads, -1).sum(1).pow(2).sum(-1).mean()
