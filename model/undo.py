"""Undo records: what one version changed, kept so a fact can be taken back later.

A record holds, for every row a version changed, its value before and after. Reverting puts a
row back to its old value when nothing has changed it since (its value still equals `after`),
and otherwise subtracts only this version's contribution (`after - before`), keeping what later
versions added on top.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, safe_open

from model.errors import SnapshotError
from model.lm import MemoryLM
from model.snapshot import save_atomically


@dataclass(frozen=True)
class UndoRecord:
    version: int
    fact_ids: tuple[str, ...]
    rows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # layer -> (slot ids, before, after)

    @classmethod
    def capture(cls, lm: MemoryLM, version: int, fact_ids, touched: dict[int, tuple[torch.Tensor, torch.Tensor]]
                ) -> UndoRecord:
        """From the learner's (ids, before) per layer and the rows as they are now."""
        rows = {}
        for layer, (ids, before) in touched.items():
            if len(ids):
                after = lm.memories[layer].values.detach()[ids.to(lm.device)].cpu().clone()
                rows[layer] = (ids, before.to(after.dtype), after)
        return cls(version, tuple(fact_ids), rows)

    def save(self, path: Path) -> Path:
        tensors = {}
        for layer, (ids, before, after) in self.rows.items():
            tensors[f"{layer}.slot_ids"] = ids.contiguous()
            tensors[f"{layer}.before"] = before.contiguous()
            tensors[f"{layer}.after"] = after.contiguous()
        # fsynced like a snapshot: a published version must never lose its undo record to a power cut
        meta = {"version": str(self.version), "fact_ids": json.dumps(self.fact_ids)}
        return save_atomically(tensors, Path(path), meta)

    @classmethod
    def load(cls, path: Path) -> UndoRecord:
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as exc:
            raise SnapshotError(f"cannot read undo record {path}: {exc}") from exc
        layers = sorted({int(k.split(".")[0]) for k in tensors})
        rows = {i: (tensors[f"{i}.slot_ids"], tensors[f"{i}.before"], tensors[f"{i}.after"]) for i in layers}
        return cls(int(meta["version"]), tuple(json.loads(meta["fact_ids"])), rows)


@torch.no_grad()
def revert(lm: MemoryLM, record: UndoRecord) -> dict[int, torch.Tensor]:
    """Take back `record`'s change in place; returns the slot ids it rewrote, per layer."""
    changed = {}
    for layer, (ids, before, after) in record.rows.items():
        values = lm.memories[layer].values
        idx = ids.to(values.device)
        before, after = before.to(values.device), after.to(values.device)
        current = values[idx]
        untouched = (current == after).all(dim=1, keepdim=True)
        # a later version's change kept, taken in float32 (a bfloat16 table rounds once)
        kept = current.float() - (after.float() - before.float())
        values[idx] = torch.where(untouched, before, kept.to(values.dtype))
        changed[layer] = ids
    return changed
