"""Memory deltas and snapshots: how a taught memory travels from the worker to every replica.

A delta carries the new absolute values of the rows a version changed, so applying it is
idempotent and reproduces the taught table exactly. A snapshot holds every memory tensor, the
version, the memory config and the background slot statistics, in one safetensors file written
atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load, load_file, safe_open, save, save_file

from model.config import MemoryConfig
from model.errors import SnapshotError
from model.lm import MemoryLM
from model.provenance import RowWriters
from model.statistics import SlotStats


@dataclass(frozen=True)
class MemoryDelta:
    version: int
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]]  # layer -> (slot ids [m], new rows [m, hidden])
    fact_ids: tuple[str, ...] = ()
    # Provenance (model/provenance.py): the rows each fact taught in this version wrote (fact id ->
    # layer -> slot ids), and the facts this version took back.
    writes: dict[str, dict[int, torch.Tensor]] = field(default_factory=dict)
    undone: tuple[str, ...] = ()
    deployment: str = ""  # the deployment that published it (worker/store.py); '' before deployment ids

    @property
    def num_rows(self) -> int:
        return sum(len(ids) for ids, _ in self.rows.values())

    def to_bytes(self) -> bytes:
        return save(*self.to_tensors())

    def to_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """What `to_bytes` serialises: the tensors and the header's metadata."""
        tensors = {}
        for layer, (ids, rows) in self.rows.items():
            tensors[f"{layer}.slot_ids"] = ids.to(torch.long).contiguous().cpu()
            tensors[f"{layer}.rows"] = rows.contiguous().cpu()
        writers = list(self.writes)
        for layer in {layer for layers in self.writes.values() for layer in layers}:
            owned = [(i, layers[layer]) for i, layers in enumerate(self.writes.values()) if layer in layers]
            tensors[f"{layer}.written_slots"] = torch.cat([slots.to(torch.long).cpu() for _, slots in owned])
            tensors[f"{layer}.written_by"] = torch.cat([torch.full((len(slots),), i, dtype=torch.int32)
                                                        for i, slots in owned])
        meta = {"version": str(self.version), "fact_ids": json.dumps(list(self.fact_ids)),
                "writers": json.dumps(writers), "undone": json.dumps(list(self.undone)),
                "deployment": self.deployment}
        return tensors, meta

    @classmethod
    def from_bytes(cls, data: bytes) -> MemoryDelta:
        tensors = load(data)
        meta = MemoryDelta.metadata_of(data)
        layers = sorted({int(k.split(".")[0]) for k in tensors if k.endswith(".slot_ids")})
        rows = {i: (tensors[f"{i}.slot_ids"], tensors[f"{i}.rows"]) for i in layers}
        writers = json.loads(meta.get("writers", "[]"))  # absent in deltas written before provenance
        writes: dict[str, dict[int, torch.Tensor]] = {fact_id: {} for fact_id in writers}
        for key in tensors:
            if key.endswith(".written_slots"):
                layer = int(key.split(".")[0])
                slots, owner = tensors[key], tensors[f"{layer}.written_by"]
                for i, fact_id in enumerate(writers):
                    writes[fact_id][layer] = slots[owner == i]
        return cls(int(meta["version"]), rows, tuple(json.loads(meta["fact_ids"])), writes,
                   tuple(json.loads(meta.get("undone", "[]"))), meta.get("deployment", ""))

    @staticmethod
    def deployment_of(data: bytes) -> str:
        """The deployment a serialised delta belongs to, from its header alone."""
        return MemoryDelta.metadata_of(data).get("deployment", "")

    @staticmethod
    def metadata_of(data: bytes) -> dict[str, str]:
        """A serialised delta's header metadata (a caller's own keys included), without its tensors."""
        # safetensors' header: 8-byte little-endian length, then JSON with "__metadata__".
        n = int.from_bytes(data[:8], "little")
        return json.loads(data[8:8 + n]).get("__metadata__", {})


def make_delta(lm: MemoryLM, version: int, slot_ids: dict[int, torch.Tensor], fact_ids=(),
               writes: dict[str, dict[int, torch.Tensor]] | None = None, undone=(), deployment: str = ""
               ) -> MemoryDelta:
    rows = {i: (ids, lm.memories[i].values.detach()[ids.to(lm.device)].cpu().clone())
            for i, ids in slot_ids.items() if len(ids)}
    return MemoryDelta(version, rows, tuple(fact_ids), dict(writes or {}), tuple(undone), deployment)


@torch.no_grad()
def apply_delta(lm: MemoryLM, delta: MemoryDelta) -> None:
    for layer, (ids, rows) in delta.rows.items():
        if layer not in lm.memories:
            raise SnapshotError(f"delta {delta.version} changes layer {layer}, which has no memory")
        values = lm.memories[layer].values
        if rows.shape[1:] != values.shape[1:] or (len(ids) and int(ids.max()) >= len(values)):
            raise SnapshotError(f"delta {delta.version} does not fit the memory of layer {layer}")
        values[ids.to(values.device)] = rows.to(values.device, values.dtype)


@dataclass
class Snapshot:
    version: int
    config: MemoryConfig
    model_name: str
    tensors: dict[str, torch.Tensor]  # "memory.<layer>.<name>", "stats.<layer>.<name>", "provenance.<name>"
    stats: SlotStats
    writers: RowWriters = field(default_factory=RowWriters)  # empty in snapshots written before provenance
    deployment: str = ""  # '' in snapshots written before deployment ids
    metadata: dict[str, str] = field(default_factory=dict)  # the whole header, a caller's `extra` included


def save_snapshot(lm: MemoryLM, stats: SlotStats, version: int, path: Path,
                  writers: RowWriters | None = None, deployment: str = "",
                  extra: Mapping[str, str] | None = None) -> Path:
    """`extra`: metadata of the caller's own (a benchmark's progress), kept beside the snapshot's."""
    tensors: dict[str, torch.Tensor] = {}
    for layer, memory in lm.memories.items():
        for name, t in memory.state_dict().items():
            tensors[f"memory.{layer}.{name}"] = t.detach().contiguous().cpu()
        tensors[f"stats.{layer}.doc_freq"] = stats.doc_freq[layer].contiguous()
        tensors[f"stats.{layer}.reads"] = stats.reads[layer].contiguous()
    meta = {"version": str(version), "memory_config": lm.config.to_json(), "model_name": lm.model_name,
            "num_docs": str(stats.num_docs), "fingerprint": stats.fingerprint, "deployment": deployment,
            **(extra or {})}
    if writers is not None and len(writers):
        ledger, names = writers.to_tensors()
        tensors.update({f"provenance.{name}": t for name, t in ledger.items()})
        meta["provenance_facts"] = json.dumps(names)
    return save_atomically(tensors, Path(path), meta)


TEMPORARY = ".*.tmp-*"  # what save_atomically leaves behind when its process dies mid-write


def save_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    """Write a safetensors file so that `path` is either absent, the old file, or the whole new one, also
    after a power loss (file and directory fsynced). The temporary name is unique to this call: pids
    repeat across containers, which all run as pid 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove_temporary_files(directory: Path) -> list[Path]:
    """Delete what interrupted writes left in `directory` (call only where no write is under way)."""
    removed = sorted(directory.glob(TEMPORARY)) if directory.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def read_snapshot(path: Path) -> Snapshot:
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except Exception as exc:  # a truncated or foreign file
        raise SnapshotError(f"cannot read snapshot {path}: {exc}") from exc
    layers = sorted({int(k.split(".")[1]) for k in tensors if k.startswith("stats.")})
    stats = SlotStats(
        num_docs=int(meta["num_docs"]),
        doc_freq={i: tensors[f"stats.{i}.doc_freq"] for i in layers},
        reads={i: tensors[f"stats.{i}.reads"] for i in layers},
        fingerprint=meta["fingerprint"],
    )
    writers = RowWriters()
    if "provenance_facts" in meta:
        writers = RowWriters.from_tensors({"keys": tensors["provenance.keys"], "facts": tensors["provenance.facts"]},
                                          json.loads(meta["provenance_facts"]))
    return Snapshot(int(meta["version"]), MemoryConfig.from_json(meta["memory_config"]),
                    meta.get("model_name", ""), tensors, stats, writers, meta.get("deployment", ""), meta)


@torch.no_grad()
def restore_snapshot(lm: MemoryLM, snapshot: Snapshot) -> None:
    """Load a snapshot's memory tensors into `lm`, checking every name and shape first, and that it was
    made for the same base model (a memory trained on another model's hidden states answers nonsense)."""
    if snapshot.model_name and snapshot.model_name != lm.model_name:
        raise SnapshotError(f"snapshot v{snapshot.version} was made for {snapshot.model_name}, not {lm.model_name}")
    if snapshot.config != lm.config:
        raise SnapshotError(f"snapshot memory config {snapshot.config} differs from the model's {lm.config}")
    for layer, memory in lm.memories.items():
        state = {}
        for name, current in memory.state_dict().items():
            key = f"memory.{layer}.{name}"
            if key not in snapshot.tensors or snapshot.tensors[key].shape != current.shape:
                raise SnapshotError(f"snapshot lacks {key} of shape {tuple(current.shape)}")
            state[name] = snapshot.tensors[key]
        memory.load_state_dict(state)


def load_snapshot(model: str, path: Path, device: str = "cpu") -> tuple[MemoryLM, SlotStats]:
    """The model with a saved snapshot's memories, and the snapshot's slot statistics."""
    snap = read_snapshot(path)
    lm = MemoryLM.load(model, snap.config, device)
    restore_snapshot(lm, snap)
    return lm, snap.stats
