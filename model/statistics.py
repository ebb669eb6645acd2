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


# layer -> (the memory's input [B, T, hidden], its pooled context (pooled, weight) or None)
Captured = dict[int, tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]]


def _memory_inputs(lm: MemoryLM, ids: torch.Tensor, mask: torch.Tensor) -> Captured:
    """One forward as far as the memories: what each of them was given."""
    captured: Captured = {}

    def hook_for(idx: int):
        def hook(module, args):
            captured[idx] = (args[0], module.context)
        return hook

    handles = [memory.register_forward_pre_hook(hook_for(idx)) for idx, memory in lm.memories.items()]
    try:
        lm.run_to_memories(ids, mask)
    finally:
        for h in handles:
            h.remove()
    return captured


class _Means:
    """Running means of each memory's inputs over the real tokens, and of its pooled context where
    a weighted token was seen."""

    def __init__(self, lm: MemoryLM) -> None:
        self.sums = {i: torch.zeros(lm.hidden_size, dtype=torch.float64, device=lm.device) for i in lm.memories}
        self.context_sums = {i: torch.zeros(lm.hidden_size, dtype=torch.float64, device=lm.device) for i in lm.memories}
        self.context_counts = dict.fromkeys(lm.memories, 0)
        self.count = 0

    def add(self, captured: Captured, mask: torch.Tensor) -> None:
        real = mask.bool()
        self.count += int(real.sum())
        for idx, (x, context) in captured.items():
            self.sums[idx] += x[real].double().sum(0)
            if context is not None:
                pooled, weight = context
                where = real & weight.bool()
                self.context_sums[idx] += pooled[where].double().sum(0)
                self.context_counts[idx] += int(where.sum())

    def apply(self, lm: MemoryLM) -> None:
        for idx, memory in lm.memories.items():
            memory.input_mean.copy_((self.sums[idx] / max(self.count, 1)).to(memory.input_mean.dtype))
            if hasattr(memory, "context_mean"):
                mean = self.context_sums[idx] / max(self.context_counts[idx], 1)
                memory.context_mean.copy_(mean.to(memory.context_mean.dtype))


class _ReadCounts:
    """Per-slot reads and document frequency (one document = one row of a batch)."""

    def __init__(self, lm: MemoryLM) -> None:
        self.doc_freq = {i: torch.zeros(m.num_slots, dtype=torch.long) for i, m in lm.memories.items()}
        self.reads = {i: torch.zeros(m.num_slots, dtype=torch.long) for i, m in lm.memories.items()}

    def add(self, slots_by_layer: dict[int, torch.Tensor], mask: torch.Tensor) -> None:
        for idx, slots in slots_by_layer.items():  # [B, T, heads, k]
            for row, row_mask in zip(slots.cpu(), mask.cpu().bool(), strict=True):
                read = row[row_mask].flatten()
                self.reads[idx] += torch.bincount(read, minlength=len(self.reads[idx]))
                self.doc_freq[idx][read.unique()] += 1

    def stats(self, num_docs: int, fingerprint: str) -> SlotStats:
        return SlotStats(num_docs=num_docs, doc_freq=self.doc_freq, reads=self.reads, fingerprint=fingerprint)


def _recorded_slots(lm: MemoryLM, ids: torch.Tensor, mask: torch.Tensor) -> dict[int, torch.Tensor]:
    with lm.recording() as records:
        lm.run_to_memories(ids, mask)
    return {idx: torch.cat(chunks, dim=1) for idx, chunks in records.items()}  # one chunk per forward


def _size(captured: Captured) -> int:
    tensors = [t for x, context in captured.values() for t in (x, *(context or ()))]
    return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def collect_slot_stats(lm: MemoryLM, docs: Sequence[str], fingerprint: str, batch_size: int = 8,
                       max_tokens: int = 128) -> SlotStats:
    """Per-slot document frequency and read counts over the documents (one document = one row)."""
    counts = _ReadCounts(lm)
    for ids, mask in _batches(lm, docs, batch_size, max_tokens, "slot statistics"):
        counts.add(_recorded_slots(lm, ids, mask), mask)
    return counts.stats(len(docs), fingerprint)


@torch.no_grad()
def fit_means_and_collect_stats(lm: MemoryLM, docs: Sequence[str], fingerprint: str, batch_size: int = 8,
                                max_tokens: int = 128, keep_bytes: int = 1 << 30) -> SlotStats:
    """Fit each memory's input_mean to the mean of its inputs over the documents (and, addressed by
    context, context_mean to the mean pooled context where it is defined), then collect the slot
    statistics as `collect_slot_stats` does, reading the documents through the model once.

    With zero values (version 0) no memory adds anything, so what a memory is given does not depend
    on how any memory is addressed: the inputs captured while fitting the means are the ones the
    reads after it see, and addressing them again costs a lookup, not a forward to the memory layer
    (the two passes were nearly all of preparing version 0). Batches past `keep_bytes` of captured
    inputs (a large background corpus) are run through the model again instead.
    """
    if any(bool(memory.values.any()) for memory in lm.memories.values()):
        raise ValueError("fit_means_and_collect_stats needs memories that add nothing (zero values, version 0)")
    means, kept, again, held = _Means(lm), [], [], 0
    for ids, mask in _batches(lm, docs, batch_size, max_tokens, "input centring"):
        captured = _memory_inputs(lm, ids, mask)
        means.add(captured, mask)
        size = _size(captured)
        if held + size <= keep_bytes:
            kept.append((captured, mask))
            held += size
        else:
            again.append((ids, mask))
    means.apply(lm)
    counts = _ReadCounts(lm)
    for captured, mask in kept:
        counts.add({idx: _lookup(lm.memories[idx], x, context) for idx, (x, context) in captured.items()}, mask)
    for ids, mask in tqdm(again, desc="slot statistics", unit="batch", leave=False):
        counts.add(_recorded_slots(lm, ids, mask), mask)
    return counts.stats(len(docs), fingerprint)


def _lookup(memory, x: torch.Tensor, context: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """The slots `memory` reads for input `x` with its pooled context as captured."""
    memory.context = context
    try:
        return memory.lookup(x)[0]
    finally:
        memory.context = None
