"""Background statistics of the memory: input centring, per-slot document frequency, usage."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from model.batching import pad_rows
from model.lm import MemoryLM


@dataclass
class SlotStats:
    num_docs: int  # D: documents the statistics were collected on
    doc_freq: dict[int, torch.Tensor]  # layer -> [num_slots] documents that read the slot at least once
    reads: dict[int, torch.Tensor]  # layer -> [num_slots] total reads (tokens x heads x top-k)
    fingerprint: str  # of the corpus the statistics came from

    def idf(self, layer: int) -> torch.Tensor:
        return torch.log((self.num_docs + 1) / (self.doc_freq[layer].double() + 1)).float()


@dataclass(frozen=True)
class UsageReport:
    fraction_read: float  # slots read at least once
    top1pct_share: float  # share of all reads taken by the busiest 1% of slots
    entropy: float  # usage entropy over log(num_slots): 1.0 is perfectly even

    def as_row(self) -> str:
        return f"{self.fraction_read:.1%} | {self.top1pct_share:.1%} | {self.entropy:.3f}"


def usage_report(reads: torch.Tensor) -> UsageReport:
    reads = reads.double()
    total = float(reads.sum())
    if total == 0:
        return UsageReport(0.0, 0.0, 0.0)
    top = max(1, len(reads) // 100)
    p = reads[reads > 0] / total
    return UsageReport(
        fraction_read=float((reads > 0).double().mean()),
        top1pct_share=float(reads.topk(top).values.sum()) / total,
        entropy=float(-(p * p.log()).sum()) / math.log(len(reads)),
    )


def _batches(lm: MemoryLM, docs: Sequence[str], batch_size: int, max_tokens: int,
             desc: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded token batches of the documents, truncated to max_tokens."""
    for start in tqdm(range(0, len(docs), batch_size), desc=desc, unit="batch", leave=False):
        rows = [lm.encode(d)[:max_tokens] or [lm.tokenizer.eos_token_id] for d in docs[start:start + batch_size]]
        ids, mask = pad_rows(rows, lm.tokenizer.pad_token_id)
        yield ids.to(lm.device), mask.to(lm.device)


@torch.no_grad()
def fit_input_means(lm: MemoryLM, docs: Sequence[str], batch_size: int = 8, max_tokens: int = 128) -> None:
    """Set each memory's input_mean to the mean of its inputs over the documents, and for memories
    addressed by context, context_mean to the mean pooled context where it is defined."""
    sums = {i: torch.zeros(lm.hidden_size, dtype=torch.float64, device=lm.device) for i in lm.memories}
    context_sums = {i: torch.zeros(lm.hidden_size, dtype=torch.float64, device=lm.device) for i in lm.memories}
    context_counts = dict.fromkeys(lm.memories, 0)
    count = 0
    hooks = []
    masks: list[torch.Tensor] = []

    def hook_for(idx: int):
        def hook(module, args):
            x = args[0]
            sums[idx] += x[masks[-1].bool()].double().sum(0)
            if module.context is not None:
                pooled, seen = module.context
                where = masks[-1].bool() & seen.bool()
                context_sums[idx] += pooled[where].double().sum(0)
                context_counts[idx] += int(where.sum())
        return hook

    for idx, memory in lm.memories.items():
        hooks.append(memory.register_forward_pre_hook(hook_for(idx)))
    try:
        for ids, mask in _batches(lm, docs, batch_size, max_tokens, "input centring"):
            masks.append(mask)
            lm.run_to_memories(ids, mask)
            count += int(mask.sum())
    finally:
        for h in hooks:
            h.remove()
    for idx, memory in lm.memories.items():
        memory.input_mean.copy_((sums[idx] / max(count, 1)).to(memory.input_mean.dtype))
        if hasattr(memory, "context_mean"):
            memory.context_mean.copy_((context_sums[idx] / max(context_counts[idx], 1)).to(memory.context_mean.dtype))


@torch.no_grad()
def collect_slot_stats(lm: MemoryLM, docs: Sequence[str], fingerprint: str, batch_size: int = 8,
                       max_tokens: int = 128) -> SlotStats:
    """Per-slot document frequency and read counts over the documents (one document = one row)."""
    doc_freq = {i: torch.zeros(m.num_slots, dtype=torch.long) for i, m in lm.memories.items()}
    reads = {i: torch.zeros(m.num_slots, dtype=torch.long) for i, m in lm.memories.items()}
    for ids, mask in _batches(lm, docs, batch_size, max_tokens, "slot statistics"):
        with lm.recording() as records:
            lm.run_to_memories(ids, mask)
        for idx, chunks in records.items():
            slots = torch.cat(chunks, dim=1).cpu()  # [B, T, heads, k] (one chunk per forward)
            for row, row_mask in zip(slots, mask.cpu().bool(), strict=True):
                read = row[row_mask].flatten()
                reads[idx] += torch.bincount(read, minlength=len(reads[idx]))
                doc_freq[idx][read.unique()] += 1
    return SlotStats(num_docs=len(docs), doc_freq=doc_freq, reads=reads, fingerprint=fingerprint)
