"""Product-key memory layer (Lample et al. 2019; Berges et al. 2024), written for sparse finetuning.

Each token's query is split in two halves; each half is scored against n sub-keys, the top-k of
each side combine into k*k candidate slots, and the best k of those are read. A slot's key is
never materialised, so a lookup costs O(n + k^2) instead of O(n^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import MemoryConfig

VALUE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def at_cap(norms: torch.Tensor, cap: float) -> torch.Tensor:
    """Which rows (by their L2 norms) sit at the norm cap: the cap projects a row onto the sphere, so up to rounding."""
    return norms >= cap * (1 - 1e-3)


class ProductKeyMemory(nn.Module):
    """One memory layer. Its forward reads `x` [..., hidden] and returns [..., hidden].

    Three pieces of state are set from outside, never saved, and only for the span of a call:
    - `recorded_slots`: a list while `MemoryLM.recording()` is open; every forward appends the slots
      it read, so slot statistics and TF-IDF ranking see exactly what the model read (and
      `recorded_reads`, with their weights, while `MemoryLM.reads()` is open: for provenance).
    - `_trainable`: set by a sparse learner (`attach_trainable_rows`) for the steps of one batch, and
      cleared (`detach_trainable_rows`) when the batch's rows are written back into the table.
    - `context`: set by `ContextPooler`'s hook before every decoder forward (model/context.py) and
      cleared after it, when the memory is addressed by context (`context_weight` > 0).
    - `muted`: set by `MemoryLM.without_memory` for one generation: the batch rows whose reads add nothing.
    """

    def __init__(self, config: MemoryConfig, hidden_size: int, vocab_size: int | None = None) -> None:
        super().__init__()
        self.config = config
        half = config.key_dim // 2
        gen = torch.Generator().manual_seed(config.seed)
        self.query = nn.Linear(hidden_size, config.heads * config.key_dim, bias=False)
        with torch.no_grad():
            self.query.weight.copy_(torch.randn(self.query.weight.shape, generator=gen) / hidden_size**0.5)
        # [heads, 2 halves, n_keys, half]
        self.sub_keys = nn.Parameter(torch.randn(config.heads, 2, config.n_keys, half, generator=gen))
        # Zero values: at version 0 the memory adds nothing and the model equals its base.
        self.values = nn.Parameter(torch.zeros(config.num_slots, hidden_size, dtype=VALUE_DTYPES[config.value_dtype]))
        # Mean background input; subtracting it spreads reads over the table (README, "Addressing").
        self.register_buffer("input_mean", torch.zeros(hidden_size))
        if config.context_weight > 0:
            if vocab_size is None:
                raise ValueError("a memory addressed by context needs the vocabulary size")
            # Drawn after the keys, so a config that differs only in context_weight has the same keys.
            self.context_query = nn.Linear(hidden_size, config.heads * config.key_dim, bias=False)
            with torch.no_grad():
                self.context_query.weight.copy_(
                    torch.randn(self.context_query.weight.shape, generator=gen) / hidden_size**0.5)
            # Per-token weight in the context (background IDF; 0 for the prompt scaffolding), and the
            # mean background context: both fitted in prepare_version_zero.
            self.register_buffer("token_weight", torch.zeros(vocab_size))
            self.register_buffer("context_mean", torch.zeros(hidden_size))
        if config.memory_plus:
            self.gate = nn.Linear(hidden_size, hidden_size, bias=False)
            self.out_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        # Set from outside (see the class docstring):
        self.recorded_slots: list[torch.Tensor] | None = None  # each [batch, seq, heads, topk]
        self.recorded_reads: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # (slots, weights), as above
        self._trainable: tuple[torch.Tensor, torch.Tensor] | None = None  # (slot -> row index [N], rows [t, hidden])
        # ([*x.shape[:-1], hidden] pooled token embeddings, [*x.shape[:-1]] the context's weight at each position:
        # 0 until a weighted token was seen; see model/context.py)
        self.context: tuple[torch.Tensor, torch.Tensor] | None = None
        self.muted: torch.Tensor | None = None  # [batch] bool: those rows read as at version 0 (nothing added)

    @property
    def num_slots(self) -> int:
        return self.config.num_slots

    def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots read and their softmax weights, each [*x.shape[:-1], heads, topk]."""
        cfg = self.config
        h = x - self.input_mean if cfg.center_inputs else x
        q = self.query(h).view(*x.shape[:-1], cfg.heads, 2, cfg.key_dim // 2)  # [..., heads, 2, half]
        q = F.normalize(q, dim=-1)
        if cfg.context_weight > 0:
            q = F.normalize(q + self._context_query(x.shape[:-1]), dim=-1)
        keys = F.normalize(self.sub_keys, dim=-1)  # [heads, 2, n, half]
        scores = torch.einsum("...hsd,hsnd->...hsn", q, keys)  # [..., heads, 2, n]
        half_scores, half_idx = scores.topk(cfg.topk, dim=-1)  # [..., heads, 2, k]
        # All k*k combinations of a left and a right sub-key.
        pair_scores = half_scores[..., 0, :, None] + half_scores[..., 1, None, :]  # [..., heads, k, k]
        pair_slots = half_idx[..., 0, :, None] * cfg.n_keys + half_idx[..., 1, None, :]
        best, pos = pair_scores.flatten(-2).topk(cfg.topk, dim=-1)  # [..., heads, k]
        slots = pair_slots.flatten(-2).gather(-1, pos)  # [..., heads, k] slot ids
        weights = torch.softmax(best * cfg.temperature, dim=-1)
        return slots, weights

    def _context_query(self, shape: torch.Size) -> torch.Tensor:
        """The query halves of the pooled context, each of norm the context's weight at its position (zero where no
        weighted token was seen yet)."""
        if self.context is None or self.context[0].shape[:-1] != shape:
            raise RuntimeError("this memory is addressed by context: run it inside its MemoryLM, which "
                               "pools the token ids of each forward (model/context.py)")
        pooled, strength = self.context
        c = self.context_query(pooled - self.context_mean)
        c = F.normalize(c.view(*shape, self.config.heads, 2, -1), dim=-1)  # [..., heads, 2, half]
        return c * strength[..., None, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slots, weights = self.lookup(x)
        if self.recorded_slots is not None:
            self.recorded_slots.append(slots.detach())
        if self.recorded_reads is not None:
            self.recorded_reads.append((slots.detach(), weights.detach()))
        k = self.config.topk
        flat_slots, flat_weights = slots.reshape(-1, k), weights.reshape(-1, k)  # [tokens * heads, k] each
        out = self._read_table(flat_slots, flat_weights)  # [tokens * heads, hidden]
        if self._trainable is not None:
            # Selected rows live in a small trainable tensor added on top of the frozen table: the
            # same function as training those rows in place, with a gradient of t rows, not N.
            row_of_slot, rows = self._trainable
            padded = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])  # [t + 1, hidden]: unselected -> zero row
            out = out + F.embedding_bag(
                row_of_slot[flat_slots], padded, per_sample_weights=flat_weights, mode="sum"
            )
        out = out.view(*x.shape[:-1], self.config.heads, -1).sum(-2)  # [..., heads, hidden] -> [..., hidden]
        if self.config.memory_plus:
            h = x - self.input_mean if self.config.center_inputs else x
            out = self.out_proj(out * F.silu(self.gate(h)))
        if self.muted is not None:
            out = out.masked_fill(self.muted.view(-1, *[1] * (out.dim() - 1)), 0)
        return out

    def _read_table(self, slots: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The weighted sum of each token's k rows of the frozen table, in the weights' dtype."""
        if self.values.dtype == weights.dtype or not weights.requires_grad:
            return F.embedding_bag(slots, self.values, per_sample_weights=weights.to(self.values.dtype),
                                   mode="sum").to(weights.dtype)
        # A gradient through the read weights (LoRA, full finetuning) and a table in lower precision: CUDA has no
        # bfloat16 backward for embedding_bag's per-sample weights, so gather the k rows and weigh them in the
        # weights' dtype (on every device alike; [tokens * heads, k, hidden] for one step).
        return torch.einsum("nk,nkh->nh", weights, self.values[slots].to(weights.dtype))

    def place(self, device: torch.device, dtype: torch.dtype) -> ProductKeyMemory:
        """Move to the model's device, every floating tensor in the model's dtype but the value table, which keeps
        config.value_dtype (nn.Module.to would cast it too)."""
        self.to(device=device)
        for tensor in [*self.parameters(), *self.buffers()]:
            if tensor is not self.values and tensor.is_floating_point() and tensor.dtype != dtype:
                tensor.data = tensor.data.to(dtype)
        return self

    def attach_trainable_rows(self, slot_ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Route reads of `slot_ids` through `rows` (added to the table) until detached."""
        row_of_slot = torch.full((self.num_slots,), len(slot_ids), dtype=torch.long, device=rows.device)
        row_of_slot[slot_ids] = torch.arange(len(slot_ids), device=rows.device)
        self._trainable = (row_of_slot, rows)

    def trainable_row_of_slot(self) -> torch.Tensor:
        """While rows are attached: each slot's index among them, len(rows) for a slot not trained."""
        if self._trainable is None:
            raise RuntimeError("no trainable rows attached")
        return self._trainable[0]

    def detach_trainable_rows(self) -> None:
        self._trainable = None
